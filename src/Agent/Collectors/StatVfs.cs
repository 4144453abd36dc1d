using System.Runtime.InteropServices;

namespace Fleet.Agent.Collectors;

/// <summary>The fields of statvfs(3) the disk collector uses. Block counts are in units of <see cref="FragmentSize"/>.</summary>
public readonly record struct StatVfs(
    ulong FragmentSize, ulong Blocks, ulong BlocksFree, ulong BlocksAvailable, ulong Files, ulong FilesFree)
{
    /// <summary>statvfs(3) through libc; null when the call fails (no such path, permission denied, ...).
    /// May block for long on a network file system whose server is gone.</summary>
    public static StatVfs? Query(string path)
    {
        if (!Environment.Is64BitProcess) return null; // the layout below is the LP64 one
        if (CollectorsLibc.StatVfs(path, out var buffer) != 0) return null;
        return new StatVfs(buffer.FrSize, buffer.Blocks, buffer.BFree, buffer.BAvail, buffer.Files, buffer.FFree);
    }
}

/// <summary>libc calls of the collectors.</summary>
internal static partial class CollectorsLibc
{
    /// <summary>sysconf name of the clock tick rate (the same on glibc and musl).</summary>
    internal const int SC_CLK_TCK = 2;

    [LibraryImport("libc", EntryPoint = "statvfs", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int StatVfs(string path, out NativeStatVfs buffer);

    [LibraryImport("libc", EntryPoint = "sysconf")]
    internal static partial nint Sysconf(int name);

    /// <summary>
    /// struct statvfs on 64-bit Linux (glibc and musl agree up to f_favail): f_bsize, f_frsize, f_blocks, f_bfree,
    /// f_bavail, f_files, f_ffree, f_favail, then f_fsid, f_flag, f_namemax and spare ints: 112 bytes in all.
    /// Size is padded so a libc that writes a little more stays inside the buffer.
    /// </summary>
    [StructLayout(LayoutKind.Sequential, Size = 256)]
    internal struct NativeStatVfs
    {
        public ulong BSize;
        public ulong FrSize;
        public ulong Blocks;
        public ulong BFree;
        public ulong BAvail;
        public ulong Files;
        public ulong FFree;
        public ulong FAvail;
    }
}
