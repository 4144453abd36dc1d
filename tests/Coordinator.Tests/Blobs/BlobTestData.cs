using System.Security.Cryptography;

namespace Fleet.Coordinator.Tests.Blobs;

static class BlobTestData
{
    public const int TwelveMiB = 12 * 1024 * 1024 + 7; // not a multiple of the S3 part size: two parts, the last one short

    public static byte[] Random(int size) => RandomNumberGenerator.GetBytes(size);

    public static async Task<byte[]> ReadAllAsync(Stream stream)
    {
        await using (stream)
        {
            using var copy = new MemoryStream();
            await stream.CopyToAsync(copy);
            return copy.ToArray();
        }
    }

    /// <summary>Asserts equal bytes with a short message (xunit would print megabytes).</summary>
    public static void AssertSameBytes(byte[] expected, byte[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: expected {expected.Length} bytes, got {actual.Length}");
        var firstDiff = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(firstDiff == expected.Length, $"{what}: bytes differ from offset {firstDiff}");
    }
}

/// <summary>A body that fails after <c>failAfter</c> bytes, like a client that disconnects mid-upload.</summary>
sealed class FailingStream(byte[] data, int failAfter) : Stream
{
    int _position;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _position; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (_position >= failAfter) throw new IOException("simulated client disconnect");
        var n = Math.Min(buffer.Length, Math.Min(failAfter, data.Length) - _position);
        data.AsSpan(_position, n).CopyTo(buffer);
        _position += n;
        return n;
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(Read(buffer.Span));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Task.FromResult(Read(buffer.AsSpan(offset, count)));

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
