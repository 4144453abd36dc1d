using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Fleet.Coordinator.Blobs;
using Fleet.Coordinator.Hosting;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Audit;

/// <summary>
/// A signed statement, kept in the blob store, of the chain hash of every row in (FromSeq..ToSeq). The HMAC key
/// lives in a file outside the database, so someone who can rewrite the database (and recompute every hash)
/// still cannot produce anchors that match.
/// </summary>
public sealed record AuditAnchor(long FromSeq, long ToSeq, DateTime Time, IReadOnlyList<byte[]> Hashes, byte[] Mac)
{
    public byte[] HashOf(long seq) => Hashes[(int)(seq - FromSeq)];
}

public sealed class AuditAnchors(IBlobStore blobs, IOptions<AuditOptions> options, IOptions<FleetOptions> fleet)
{
    public const string Prefix = "audit/anchors/";
    readonly Lazy<byte[]> key = new(() => LoadOrCreateKey(KeyPath(options.Value, fleet.Value)));

    public static string KeyPath(AuditOptions audit, FleetOptions fleet) =>
        audit.KeyFile ?? Path.Combine(Path.GetFullPath(fleet.DataDirectory), "audit-anchor.key");

    /// <summary>Loads the key now, so a missing or unreadable key file fails at start, not at the first anchor.</summary>
    public void EnsureKey() => _ = key.Value;

    public async Task<AuditAnchor> WriteAsync(long fromSeq, long toSeq, DateTime time, IReadOnlyList<byte[]> hashes, CancellationToken cancellationToken)
    {
        if (hashes.Count != toSeq - fromSeq + 1)
            throw new ArgumentException($"an anchor of seq {fromSeq}..{toSeq} needs {toSeq - fromSeq + 1} hashes, got {hashes.Count}", nameof(hashes));
        var anchor = new AuditAnchor(fromSeq, toSeq, time, hashes, Mac(fromSeq, toSeq, time, hashes));
        using var buffer = new MemoryStream();
        await using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("version", 1);
            writer.WriteNumber("fromSeq", fromSeq);
            writer.WriteNumber("toSeq", toSeq);
            writer.WriteString("time", time.ToString("O", CultureInfo.InvariantCulture));
            writer.WriteStartArray("hashes");
            foreach (var h in hashes) writer.WriteStringValue(Convert.ToHexStringLower(h));
            writer.WriteEndArray();
            writer.WriteString("mac", Convert.ToHexStringLower(anchor.Mac));
            writer.WriteEndObject();
        }
        buffer.Position = 0;
        await blobs.PutAsync(KeyOf(toSeq), buffer, "application/json", cancellationToken);
        return anchor;
    }

    public static string KeyOf(long toSeq) => $"{Prefix}{toSeq:D19}.json";

    /// <summary>Every anchor in seq order. A malformed or wrongly signed anchor is reported, not skipped.</summary>
    public async Task<(List<AuditAnchor> Anchors, string? Problem, long ProblemSeq)> ReadAllAsync(CancellationToken cancellationToken)
    {
        var anchors = new List<AuditAnchor>();
        var keys = new List<string>();
        await foreach (var blob in blobs.ListAsync(Prefix, cancellationToken))
            keys.Add(blob.Key);
        keys.Sort(StringComparer.Ordinal);
        foreach (var blobKey in keys)
        {
            await using var stream = await blobs.OpenReadAsync(blobKey, cancellationToken);
            if (stream is null) continue;
            AuditAnchor anchor;
            try
            {
                using var doc = await JsonDocument.ParseAsync(stream, cancellationToken: cancellationToken);
                var root = doc.RootElement;
                var hashes = root.GetProperty("hashes").EnumerateArray().Select(h => Convert.FromHexString(h.GetString()!)).ToList();
                anchor = new AuditAnchor(root.GetProperty("fromSeq").GetInt64(), root.GetProperty("toSeq").GetInt64(),
                    DateTime.Parse(root.GetProperty("time").GetString()!, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind),
                    hashes, Convert.FromHexString(root.GetProperty("mac").GetString()!));
            }
            catch (Exception ex) when (ex is JsonException or FormatException or KeyNotFoundException or InvalidOperationException)
            {
                return (anchors, $"anchor {blobKey} is unreadable: {ex.Message}", anchors.LastOrDefault()?.ToSeq + 1 ?? 1);
            }
            if (!CryptographicOperations.FixedTimeEquals(anchor.Mac, Mac(anchor.FromSeq, anchor.ToSeq, anchor.Time, anchor.Hashes)))
                return (anchors, $"anchor {blobKey} has an invalid signature", anchor.FromSeq);
            if (anchor.Hashes.Count != anchor.ToSeq - anchor.FromSeq + 1)
                return (anchors, $"anchor {blobKey} lists {anchor.Hashes.Count} hashes for seq {anchor.FromSeq}..{anchor.ToSeq}", anchor.FromSeq);
            anchors.Add(anchor);
        }
        return (anchors, null, 0);
    }

    byte[] Mac(long fromSeq, long toSeq, DateTime time, IReadOnlyList<byte[]> hashes)
    {
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key.Value);
        hmac.AppendData(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"fleet-audit-anchor-v1\n{fromSeq}\n{toSeq}\n{time:O}\n")));
        foreach (var h in hashes) hmac.AppendData(h);
        return hmac.GetHashAndReset();
    }

    static byte[] LoadOrCreateKey(string path)
    {
        if (File.Exists(path))
        {
            var existing = File.ReadAllBytes(path);
            if (existing.Length < 32)
                throw new InvalidOperationException($"Fleet:Audit:KeyFile: '{path}' holds {existing.Length} bytes; an anchor key needs at least 32.");
            return existing;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var created = RandomNumberGenerator.GetBytes(32);
        var temp = path + ".tmp";
        using (var file = new FileStream(temp, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        }))
        {
            file.Write(created);
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, path);
        return created;
    }
}
