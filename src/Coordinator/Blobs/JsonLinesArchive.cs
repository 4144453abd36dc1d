using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;

namespace Fleet.Coordinator.Blobs;

/// <summary>Day archives written before rows are deleted (audit trail, logs): gzip'd JSON lines, checked after the upload.</summary>
public static class JsonLinesArchive
{
    /// <summary>One JSON object per row, one row per line, gzip-compressed.</summary>
    public static byte[] Gzip<T>(IEnumerable<T> rows, Action<Utf8JsonWriter, T> write)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(write);
        using var buffer = new MemoryStream();
        using (var gzip = new GZipStream(buffer, CompressionLevel.Optimal, leaveOpen: true))
        using (var writer = new Utf8JsonWriter(gzip))
        {
            foreach (var row in rows)
            {
                write(writer, row);
                writer.Flush();
                gzip.WriteByte((byte)'\n');
                writer.Reset();
            }
        }
        return buffer.ToArray();
    }

    /// <summary>True when the blob exists and holds exactly <paramref name="expected"/> (read back after the upload).</summary>
    public static async Task<bool> HoldsAsync(IBlobStore blobs, string key, byte[] expected, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(blobs);
        await using var stream = await blobs.OpenReadAsync(key, cancellationToken);
        if (stream is null) return false;
        return CryptographicOperations.FixedTimeEquals(await SHA256.HashDataAsync(stream, cancellationToken), SHA256.HashData(expected));
    }
}
