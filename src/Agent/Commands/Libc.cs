using System.Runtime.InteropServices;

namespace Fleet.Agent.Commands;

internal static partial class Libc
{
    internal const int SIGKILL = 9;
    internal const int SIGTERM = 15;
    internal const int SIGSTOP = 19;
    internal const int ESRCH = 3;
    internal const int X_OK = 1;

    /// <summary>kill(2). Returns 0 on success, -1 with errno (Marshal.GetLastPInvokeError) on failure.</summary>
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    internal static partial int Kill(int pid, int signal);

    /// <summary>access(2): 0 when the calling process (real uid/gid) may perform <paramref name="mode"/> on the path.</summary>
    [LibraryImport("libc", EntryPoint = "access", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int Access(string path, int mode);
}
