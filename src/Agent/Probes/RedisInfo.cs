using System.Globalization;

namespace Fleet.Agent.Probes;

/// <summary>The text of Redis <c>INFO</c> ("# Section" headers, "key:value" lines) and the values the redis probe reports.</summary>
internal static class RedisInfo
{
    public const string UsedMemoryBytes = "redis.used_memory_bytes";
    public const string MemFragmentationRatio = "redis.mem_fragmentation_ratio";
    public const string KeyspaceHitRatio = "redis.keyspace_hit_ratio";
    public const string EvictedKeys = "redis.evicted_keys";
    public const string ExpiredKeys = "redis.expired_keys";

    /// <summary>Every "key:value" line; headers, blank lines and anything else are skipped. Later keys win.</summary>
    public static Dictionary<string, string> Parse(string text)
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#') continue;
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0) continue;
            fields[line[..colon]] = line[(colon + 1)..];
        }
        return fields;
    }

    /// <summary>Adds the reported values found in <paramref name="fields"/>; missing or non-numeric fields are left out,
    /// and the hit ratio is left out when there were neither hits nor misses.</summary>
    public static void AddValues(IReadOnlyDictionary<string, string> fields, IDictionary<string, double> values)
    {
        if (Number(fields, "used_memory") is { } used) values[UsedMemoryBytes] = used;
        if (Number(fields, "mem_fragmentation_ratio") is { } fragmentation) values[MemFragmentationRatio] = fragmentation;
        if (Number(fields, "evicted_keys") is { } evicted) values[EvictedKeys] = evicted;
        if (Number(fields, "expired_keys") is { } expired) values[ExpiredKeys] = expired;
        if (Number(fields, "keyspace_hits") is { } hits && Number(fields, "keyspace_misses") is { } misses && hits + misses > 0)
            values[KeyspaceHitRatio] = hits / (hits + misses);
    }

    static double? Number(IReadOnlyDictionary<string, string> fields, string key) =>
        fields.TryGetValue(key, out var text)
        && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
        && double.IsFinite(value)
            ? value
            : null;
}
