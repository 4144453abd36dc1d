using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace Fleet.Agent.Outbox;

/// <summary>
/// On-disk framing of one record in a segment file (all integers little-endian):
/// <code>
///  0  u32 magic "FOB1"
///  4  u32 CRC-32 of bytes [8, 28 + length)  (length, epoch, counter and payload)
///  8  u32 payload length
/// 12  u64 epoch
/// 20  u64 counter
/// 28  payload
/// </code>
/// </summary>
internal static class SegmentFormat
{
    public const uint Magic = 0x3142_4F46; // bytes 'F' 'O' 'B' '1'
    public const int HeaderSize = 28;
    public const int MaxPayload = 0x7FFF_FFC7 - HeaderSize; // Array.MaxLength - header: a frame must fit a byte[]

    public static ReadOnlySpan<byte> MagicBytes => "FOB1"u8;

    public static void WriteHeader(Span<byte> header, ulong epoch, ulong counter, ReadOnlySpan<byte> payload)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(header[12..], epoch);
        BinaryPrimitives.WriteUInt64LittleEndian(header[20..], counter);
        var state = Crc32Ieee.Update(~0u, header[8..HeaderSize]);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], ~Crc32Ieee.Update(state, payload));
    }

    /// <summary>Validates a complete in-memory frame (header + payload) as read back for sending.</summary>
    public static bool IsValidFrame(ReadOnlySpan<byte> frame, ulong epoch, ulong counter)
    {
        if (frame.Length < HeaderSize) return false;
        if (BinaryPrimitives.ReadUInt32LittleEndian(frame) != Magic) return false;
        if (BinaryPrimitives.ReadUInt32LittleEndian(frame[8..]) != (uint)(frame.Length - HeaderSize)) return false;
        if (BinaryPrimitives.ReadUInt64LittleEndian(frame[12..]) != epoch) return false;
        if (BinaryPrimitives.ReadUInt64LittleEndian(frame[20..]) != counter) return false;
        return BinaryPrimitives.ReadUInt32LittleEndian(frame[4..]) == Crc32Ieee.Hash(frame[8..]);
    }

    public enum FrameStatus { Ok, Torn, BadMagic, BadCrc }

    public readonly record struct FrameInfo(ulong Epoch, ulong Counter, int PayloadLength);

    /// <summary>
    /// Reads and checks the frame at <paramref name="offset"/>, streaming the payload through the CRC in chunks
    /// (so recovery never holds a whole large record in memory).
    /// <see cref="FrameStatus.Torn"/>: the header or the payload extends past the end of the file.
    /// </summary>
    public static FrameStatus Probe(SafeFileHandle file, long offset, long fileLength, byte[] buffer, out FrameInfo info)
    {
        info = default;
        if (fileLength - offset < HeaderSize) return FrameStatus.Torn;
        Span<byte> header = stackalloc byte[HeaderSize];
        if (!ReadExactly(file, header, offset)) return FrameStatus.Torn;
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic) return FrameStatus.BadMagic;
        var length = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if (length > MaxPayload) return FrameStatus.BadMagic; // a length no writer produces: a damaged header
        if (offset + HeaderSize + length > fileLength) return FrameStatus.Torn;

        var crc = Crc32Ieee.Update(~0u, header[8..]);
        var position = offset + HeaderSize;
        var remaining = (long)length;
        while (remaining > 0)
        {
            var chunk = buffer.AsSpan(0, (int)Math.Min(buffer.Length, remaining));
            if (!ReadExactly(file, chunk, position)) return FrameStatus.Torn;
            crc = Crc32Ieee.Update(crc, chunk);
            position += chunk.Length;
            remaining -= chunk.Length;
        }
        if (~crc != BinaryPrimitives.ReadUInt32LittleEndian(header[4..])) return FrameStatus.BadCrc;

        info = new FrameInfo(
            BinaryPrimitives.ReadUInt64LittleEndian(header[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(header[20..]),
            (int)length);
        return FrameStatus.Ok;
    }

    /// <summary>After damage at <paramref name="start"/>: how many intact frames can still be found further on (resynchronising on the magic).</summary>
    public static int CountIntactFramesFrom(SafeFileHandle file, long start, long fileLength, byte[] buffer)
    {
        var count = 0;
        var position = start;
        var magic = MagicBytes;
        while (fileLength - position >= HeaderSize)
        {
            var window = buffer.AsSpan(0, (int)Math.Min(buffer.Length, fileLength - position));
            if (!ReadExactly(file, window, position)) break;
            var hit = window.IndexOf(magic);
            if (hit < 0)
            {
                position += window.Length - (magic.Length - 1); // keep an overlap for a magic split across windows
                continue;
            }
            var candidate = position + hit;
            if (Probe(file, candidate, fileLength, buffer, out var info) == FrameStatus.Ok)
            {
                count++;
                position = candidate + HeaderSize + info.PayloadLength;
            }
            else
            {
                position = candidate + 1;
            }
        }
        return count;
    }

    public static bool ReadExactly(SafeFileHandle file, Span<byte> destination, long offset)
    {
        while (destination.Length > 0)
        {
            var n = RandomAccess.Read(file, destination, offset);
            if (n <= 0) return false;
            destination = destination[n..];
            offset += n;
        }
        return true;
    }
}
