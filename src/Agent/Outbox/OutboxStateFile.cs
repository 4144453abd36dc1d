using System.Buffers.Binary;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Fleet.Agent.Outbox;

/// <summary>
/// The outbox's epoch and its reserved counter high-water mark, in a 1 KiB file with two 32-byte slots
/// (at offsets 0 and 512, so they never share a sector). Each reservation overwrites the older slot in place with a
/// higher generation and fsyncs, so a torn write leaves the other slot intact and no new disk blocks are ever needed
/// (a reservation still works on a full disk). Slot layout (little-endian):
/// <code>u32 magic "FOS1" | u32 CRC-32 of [8,32) | u64 epoch | u64 reserved counter | u64 generation</code>
/// The file is held open with <see cref="FileShare.None"/>, which also keeps a second process off the same outbox.
/// </summary>
internal sealed class OutboxStateFile : IDisposable
{
    private const uint Magic = 0x3153_4F46; // 'F' 'O' 'S' '1'
    private const int SlotSize = 32;
    private const int SlotStride = 512;
    private const int FileSize = 2 * SlotStride;

    private readonly SafeFileHandle _file;
    private ulong _generation;

    public ulong Epoch { get; }

    /// <summary>Every counter up to and including this one may have been used; none above it has.</summary>
    public ulong Reserved { get; private set; }

    private OutboxStateFile(SafeFileHandle file, ulong epoch, ulong reserved, ulong generation)
    {
        _file = file;
        Epoch = epoch;
        Reserved = reserved;
        _generation = generation;
    }

    public static OutboxStateFile Open(string path, ILogger logger, bool segmentsExist)
    {
        var existed = File.Exists(path);
        var file = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        try
        {
            var length = RandomAccess.GetLength(file);
            if (existed && length > 0)
            {
                var buffer = new byte[FileSize];
                var read = 0;
                while (read < buffer.Length)
                {
                    var n = RandomAccess.Read(file, buffer.AsSpan(read), read);
                    if (n <= 0) break;
                    read += n;
                }
                var a = ParseSlot(buffer.AsSpan(0, Math.Min(read, SlotSize)));
                var b = read >= SlotStride + SlotSize ? ParseSlot(buffer.AsSpan(SlotStride, SlotSize)) : null;
                var best = a is null ? b : b is null ? a : (a.Value.Generation >= b.Value.Generation ? a : b);
                if (best is { } slot)
                    return new OutboxStateFile(file, slot.Epoch, slot.Reserved, slot.Generation);
                logger.LogWarning(
                    "Outbox state file {Path} is corrupt; starting a new epoch (records already on disk keep their old keys)",
                    path);
            }
            else if (segmentsExist)
            {
                logger.LogWarning(
                    "Outbox state file {Path} is missing but segments exist; starting a new epoch (records already on disk keep their old keys)",
                    path);
            }

            var epoch = NewEpoch();
            var state = new OutboxStateFile(file, epoch, reserved: 0, generation: 0);
            state.WriteFresh();
            DirectorySync.Fsync(Path.GetDirectoryName(Path.GetFullPath(path))!);
            if (!segmentsExist && !existed)
                logger.LogInformation("Outbox state created at {Path} with new epoch {Epoch}", path, epoch);
            return state;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Durably raises the reservation to <paramref name="reserved"/>. Throws on I/O failure (the reservation then stays as it was).</summary>
    public void Reserve(ulong reserved)
    {
        var generation = _generation + 1;
        Span<byte> slot = stackalloc byte[SlotSize];
        FormatSlot(slot, Epoch, reserved, generation);
        RandomAccess.Write(_file, slot, (long)(generation % 2) * SlotStride);
        RandomAccess.FlushToDisk(_file);
        _generation = generation;
        Reserved = reserved;
    }

    public void Dispose() => _file.Dispose();

    private void WriteFresh()
    {
        var buffer = new byte[FileSize];
        FormatSlot(buffer.AsSpan(0, SlotSize), Epoch, Reserved, _generation);
        RandomAccess.SetLength(_file, FileSize);
        RandomAccess.Write(_file, buffer, 0);
        RandomAccess.FlushToDisk(_file);
    }

    private static void FormatSlot(Span<byte> slot, ulong epoch, ulong reserved, ulong generation)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(slot, Magic);
        BinaryPrimitives.WriteUInt64LittleEndian(slot[8..], epoch);
        BinaryPrimitives.WriteUInt64LittleEndian(slot[16..], reserved);
        BinaryPrimitives.WriteUInt64LittleEndian(slot[24..], generation);
        BinaryPrimitives.WriteUInt32LittleEndian(slot[4..], Crc32Ieee.Hash(slot[8..SlotSize]));
    }

    private static (ulong Epoch, ulong Reserved, ulong Generation)? ParseSlot(ReadOnlySpan<byte> slot)
    {
        if (slot.Length < SlotSize) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(slot) != Magic) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(slot[4..]) != Crc32Ieee.Hash(slot[8..SlotSize])) return null;
        var epoch = BinaryPrimitives.ReadUInt64LittleEndian(slot[8..]);
        if (epoch == 0) return null;
        return (epoch, BinaryPrimitives.ReadUInt64LittleEndian(slot[16..]), BinaryPrimitives.ReadUInt64LittleEndian(slot[24..]));
    }

    private static ulong NewEpoch()
    {
        Span<byte> bytes = stackalloc byte[8];
        ulong epoch;
        do
        {
            RandomNumberGenerator.Fill(bytes);
            epoch = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        } while (epoch == 0);
        return epoch;
    }
}
