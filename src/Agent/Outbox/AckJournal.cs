using System.Buffers.Binary;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Fleet.Agent.Outbox;

/// <summary>
/// Append-only list of the keys of records that were acknowledged or rejected but whose segment file still exists,
/// so that a restart does not hand them out again. Entry (20 bytes, little-endian): <c>u64 epoch | u64 counter | u32 CRC-32 of the 16 bytes</c>.
/// Writes are not fsync'ed: losing the tail of the journal only makes the agent resend records that the coordinator
/// then discards as duplicates. Rewritten compactly on open and whenever it is mostly garbage (keys of deleted segments).
/// </summary>
internal sealed class AckJournal : IDisposable
{
    public const int EntrySize = 20;

    private readonly string _path;
    private readonly ILogger _logger;
    private SafeFileHandle? _file;
    private bool _failureLogged;

    public long Length { get; private set; }

    public AckJournal(string path, ILogger logger)
    {
        _path = path;
        _logger = logger;
    }

    /// <summary>Reads every intact entry; stops at the first damaged one (a torn tail).</summary>
    public static List<OutboxKey> Load(string path)
    {
        var keys = new List<OutboxKey>();
        if (!File.Exists(path)) return keys;
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        var length = RandomAccess.GetLength(file);
        var buffer = new byte[EntrySize * 4096];
        long offset = 0;
        while (offset < length)
        {
            var n = RandomAccess.Read(file, buffer, offset);
            if (n <= 0) break;
            var whole = n / EntrySize * EntrySize;
            if (whole == 0) break;
            for (var i = 0; i < whole; i += EntrySize)
            {
                var entry = buffer.AsSpan(i, EntrySize);
                if (BinaryPrimitives.ReadUInt32LittleEndian(entry[16..]) != Crc32Ieee.Hash(entry[..16]))
                    return keys;
                keys.Add(new OutboxKey(BinaryPrimitives.ReadUInt64LittleEndian(entry), BinaryPrimitives.ReadUInt64LittleEndian(entry[8..])));
            }
            offset += whole;
        }
        return keys;
    }

    /// <summary>Best effort: an I/O error only means the record may be resent after a restart.</summary>
    public void Append(OutboxKey key)
    {
        Span<byte> entry = stackalloc byte[EntrySize];
        Format(entry, key);
        try
        {
            _file ??= OpenForAppend();
            RandomAccess.Write(_file, entry, Length);
            Length += EntrySize;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // A partial entry may be on disk; the next write goes to the same offset and overwrites it.
            if (!_failureLogged)
            {
                _failureLogged = true;
                _logger.LogWarning(ex, "Could not write the outbox acknowledgement journal {Path}; acknowledged records may be resent after a restart", _path);
            }
        }
    }

    /// <summary>Replaces the journal with exactly <paramref name="keys"/> (write to a temporary file, fsync, rename).</summary>
    public void Rewrite(IReadOnlyCollection<OutboxKey> keys)
    {
        var temp = _path + ".tmp";
        try
        {
            if (keys.Count == 0)
            {
                _file?.Dispose();
                _file = null;
                File.Delete(_path);
                Length = 0;
                return;
            }
            var buffer = new byte[keys.Count * EntrySize];
            var i = 0;
            foreach (var key in keys)
            {
                Format(buffer.AsSpan(i, EntrySize), key);
                i += EntrySize;
            }
            using (var tmp = File.OpenHandle(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                RandomAccess.Write(tmp, buffer, 0);
                RandomAccess.FlushToDisk(tmp);
            }
            _file?.Dispose();
            _file = null;
            File.Move(temp, _path, overwrite: true);
            Length = buffer.Length;
            _failureLogged = false;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning(ex, "Could not compact the outbox acknowledgement journal {Path}", _path);
            try { File.Delete(temp); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }

    public void Flush()
    {
        try
        {
            if (_file is not null) RandomAccess.FlushToDisk(_file);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
    }

    public void Dispose()
    {
        _file?.Dispose();
        _file = null;
    }

    private SafeFileHandle OpenForAppend()
    {
        var file = File.OpenHandle(_path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        Length = RandomAccess.GetLength(file) / EntrySize * EntrySize;
        return file;
    }

    private static void Format(Span<byte> entry, OutboxKey key)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(entry, key.Epoch);
        BinaryPrimitives.WriteUInt64LittleEndian(entry[8..], key.Counter);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[16..], Crc32Ieee.Hash(entry[..16]));
    }
}
