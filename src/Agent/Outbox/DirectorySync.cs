using System.Runtime.InteropServices;
using System.Text;

namespace Fleet.Agent.Outbox;

/// <summary>
/// fsync of a directory, so that a created/renamed/deleted file's directory entry survives a power loss.
/// .NET has no managed API for it; this is a plain blittable P/Invoke (AOT-safe, no runtime marshalling of strings).
/// Best effort: failures are ignored, since the file contents themselves are fsync'ed separately.
/// </summary>
internal static partial class DirectorySync
{
    public static void Fsync(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS() && !OperatingSystem.IsFreeBSD())
            return;
        try
        {
            var bytes = new byte[Encoding.UTF8.GetMaxByteCount(directory.Length) + 1];
            Encoding.UTF8.GetBytes(directory, bytes); // remaining bytes are zero: NUL-terminated
            var fd = open(bytes, 0 /* O_RDONLY */);
            if (fd < 0)
                return;
            _ = fsync(fd);
            _ = close(fd);
        }
        catch (DllNotFoundException) { }
        catch (EntryPointNotFoundException) { }
    }

    [DllImport("libc", EntryPoint = "open")]
    private static extern int open(byte[] path, int flags);

    [DllImport("libc", EntryPoint = "fsync")]
    private static extern int fsync(int fd);

    [DllImport("libc", EntryPoint = "close")]
    private static extern int close(int fd);
}
