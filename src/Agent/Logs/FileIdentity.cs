using System.Globalization;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Fleet.Agent.Logs;

/// <summary>
/// Who a file is, independent of its name: device + inode + a fingerprint of its first bytes, rendered
/// "DEV:INODE:FINGERPRINT" (hex). Device + inode follow a file across renames; the fingerprint tells a reused inode
/// (delete, then create) or a copytruncate'd file from the file a checkpoint was taken for.
/// <para>
/// Fingerprint rule: XxHash64 of the file's first line including its '\n', or of its first
/// <see cref="FingerprintBytes"/> bytes when no newline occurs before then. Those bytes never change while a file is
/// only appended to, so the id is the same whenever it is computed (first sight, after a restart). A file whose first
/// <see cref="FingerprintBytes"/> bytes hold no newline yet has no identity: it is not read until its first line is
/// complete or it reaches <see cref="FingerprintBytes"/> bytes (a file holding only an unterminated short line waits).
/// </para>
/// </summary>
public readonly record struct FileIdentity(ulong Device, ulong Inode, ulong Fingerprint, int Generation = 0)
{
    public const int FingerprintBytes = 256;

    /// <summary>"DEV:INODE:FINGERPRINT", plus ":gN" after the Nth truncation that left the same first line (copytruncate
    /// of a file whose first line repeats): the offsets start again at 0, so the id must differ from the last one's.</summary>
    public override string ToString() => Generation == 0 ? BaseId : string.Create(CultureInfo.InvariantCulture, $"{BaseId}:g{Generation}");

    /// <summary>The id without the generation.</summary>
    public string BaseId => string.Create(CultureInfo.InvariantCulture, $"{Device:x}:{Inode:x}:{Fingerprint:x16}");

    /// <summary>The generation of an id of this file (0 for the base id), or null when <paramref name="fileId"/> is another file's.</summary>
    public int? GenerationOf(string fileId)
    {
        var baseId = BaseId;
        if (fileId == baseId) return 0;
        if (!fileId.StartsWith(baseId + ":g", StringComparison.Ordinal)) return null;
        return int.TryParse(fileId.AsSpan(baseId.Length + 2), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;
    }

    /// <summary>Parses "DEV:INODE:FINGERPRINT[:gN]" (the form <see cref="ToString"/> writes).</summary>
    public static FileIdentity? Parse(string fileId)
    {
        var parts = fileId.Split(':');
        if (parts.Length is < 3 or > 4) return null;
        var hex = NumberStyles.AllowHexSpecifier;
        if (!ulong.TryParse(parts[0], hex, CultureInfo.InvariantCulture, out var device)
            || !ulong.TryParse(parts[1], hex, CultureInfo.InvariantCulture, out var inode)
            || !ulong.TryParse(parts[2], hex, CultureInfo.InvariantCulture, out var fingerprint))
            return null;
        var generation = 0;
        if (parts.Length == 4 && (!parts[3].StartsWith('g') || !int.TryParse(parts[3].AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out generation)))
            return null;
        return new FileIdentity(device, inode, fingerprint, generation);
    }

    /// <summary>Same device and inode (the fingerprint may differ: reuse or truncation).</summary>
    public bool SameInode(FileIdentity other) => Device == other.Device && Inode == other.Inode;

    /// <summary>Device and inode of an open file; null if fstat fails.</summary>
    public static (ulong Device, ulong Inode)? Stat(SafeFileHandle handle)
    {
        if (!Environment.Is64BitProcess) return null;
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return LogsLibc.FStat((int)handle.DangerousGetHandle(), out var buffer) == 0 ? (buffer.Device, buffer.Inode) : null;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>Device and inode a path refers to now (following symlinks); null when it does not exist.</summary>
    public static (ulong Device, ulong Inode)? Stat(string path)
    {
        if (!Environment.Is64BitProcess) return null;
        return LogsLibc.Stat(path, out var buffer) == 0 ? (buffer.Device, buffer.Inode) : null;
    }

    /// <summary>The fingerprint of the open file (see the rule above); null while the file cannot be identified yet.</summary>
    public static ulong? ReadFingerprint(SafeFileHandle handle)
    {
        Span<byte> head = stackalloc byte[FingerprintBytes];
        var read = 0;
        while (read < head.Length)
        {
            var n = RandomAccess.Read(handle, head[read..], read);
            if (n == 0) break;
            read += n;
        }
        var newline = head[..read].IndexOf((byte)'\n');
        if (newline >= 0) return XxHash64.HashToUInt64(head[..(newline + 1)]);
        return read == FingerprintBytes ? XxHash64.HashToUInt64(head) : null;
    }

    /// <summary>The identity of an open file; null when it cannot be identified (yet).</summary>
    public static FileIdentity? Of(SafeFileHandle handle) =>
        Stat(handle) is { } id && ReadFingerprint(handle) is { } fp ? new FileIdentity(id.Device, id.Inode, fp) : null;
}

/// <summary>libc calls of the log tailer (stat and fstat exist as symbols since glibc 2.33 and in musl).</summary>
internal static partial class LogsLibc
{
    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int Stat(string path, out NativeStat buffer);

    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)]
    internal static partial int FStat(int fd, out NativeStat buffer);

    /// <summary>
    /// struct stat on 64-bit Linux: st_dev and st_ino are the first two 64-bit fields on x86_64 and aarch64 (glibc
    /// and musl); the rest is not read. 144 bytes (x86_64) or 128 (aarch64); padded so the call stays in the buffer.
    /// </summary>
    [StructLayout(LayoutKind.Sequential, Size = 256)]
    internal struct NativeStat
    {
        public ulong Device;
        public ulong Inode;
    }
}
