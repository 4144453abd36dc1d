using System.Collections.Concurrent;
using System.Globalization;
using Fleet.Coordinator.Hosting;
using Fleet.Protocol.V1;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Fleet.Coordinator.Metrics;

public sealed record LatestSample(string Name, string Labels, double Value, DateTime Time);

public sealed record LatestProbe(string Name, bool Ok, double LatencyMs, string Reason, DateTime Time);

public sealed record LatestValues(IReadOnlyList<LatestSample> Samples, IReadOnlyList<LatestProbe> Probes);

/// <summary>The newest value of every series and probe per host: Redis when configured (shared by replicas), else in process.</summary>
public interface ILatestMetrics
{
    Task SetAsync(string agentId, IReadOnlyList<MetricSample> samples, IReadOnlyList<ProbeResult> probes, CancellationToken cancellationToken);
    Task<IReadOnlyDictionary<string, LatestValues>> GetAsync(IReadOnlyCollection<string> agentIds, CancellationToken cancellationToken);
    Task ForgetAsync(string agentId, CancellationToken cancellationToken);
}

static class LatestFields
{
    // field "m|name|labels" -> "unixMs|value"; field "p|name" -> "unixMs|ok|latency|reason"
    public static string Sample(MetricSample s) => $"m|{s.Name}|{MetricLabels.Canonical(s.Labels)}";
    public static string SampleValue(MetricSample s) => string.Create(CultureInfo.InvariantCulture, $"{s.TimeUnixMs}|{s.Value:R}");
    public static string Probe(ProbeResult p) => $"p|{p.Name}";
    public static string ProbeValue(ProbeResult p) => string.Create(CultureInfo.InvariantCulture, $"{p.TimeUnixMs}|{(p.Ok ? 1 : 0)}|{p.LatencyMs:R}|{p.Reason}");

    public static LatestValues Decode(IEnumerable<KeyValuePair<string, string>> fields)
    {
        var samples = new List<LatestSample>();
        var probes = new List<LatestProbe>();
        foreach (var (field, value) in fields)
        {
            var f = field.Split('|', 3);
            var v = value.Split('|', 4);
            if (!long.TryParse(v[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms)) continue;
            var time = DateTimeOffset.FromUnixTimeMilliseconds(ms).UtcDateTime;
            if (f[0] == "m" && f.Length == 3 && v.Length == 2 && double.TryParse(v[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var x))
                samples.Add(new LatestSample(f[1], f[2], x, time));
            else if (f[0] == "p" && f.Length >= 2 && v.Length == 4 && double.TryParse(v[2], NumberStyles.Float, CultureInfo.InvariantCulture, out var latency))
                probes.Add(new LatestProbe(string.Join('|', f[1..]), v[1] == "1", latency, v[3], time));
        }
        samples.Sort((a, b) => string.CompareOrdinal(a.Name + "|" + a.Labels, b.Name + "|" + b.Labels));
        probes.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return new LatestValues(samples, probes);
    }

    public static long TimeOf(string encoded) =>
        long.TryParse(encoded.AsSpan(0, Math.Max(0, encoded.IndexOf('|'))), NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms) ? ms : long.MinValue;
}

sealed class InProcessLatestMetrics : ILatestMetrics
{
    readonly ConcurrentDictionary<string, ConcurrentDictionary<string, string>> hosts = new();

    public Task SetAsync(string agentId, IReadOnlyList<MetricSample> samples, IReadOnlyList<ProbeResult> probes, CancellationToken cancellationToken)
    {
        var fields = hosts.GetOrAdd(agentId, _ => new());
        foreach (var s in samples) Newer(fields, LatestFields.Sample(s), LatestFields.SampleValue(s));
        foreach (var p in probes) Newer(fields, LatestFields.Probe(p), LatestFields.ProbeValue(p));
        return Task.CompletedTask;
    }

    static void Newer(ConcurrentDictionary<string, string> fields, string field, string value) =>
        fields.AddOrUpdate(field, value, (_, old) => LatestFields.TimeOf(old) > LatestFields.TimeOf(value) ? old : value);

    public Task<IReadOnlyDictionary<string, LatestValues>> GetAsync(IReadOnlyCollection<string> agentIds, CancellationToken cancellationToken)
    {
        var result = new Dictionary<string, LatestValues>();
        foreach (var id in agentIds)
            if (hosts.TryGetValue(id, out var fields))
                result[id] = LatestFields.Decode(fields);
        return Task.FromResult<IReadOnlyDictionary<string, LatestValues>>(result);
    }

    public Task ForgetAsync(string agentId, CancellationToken cancellationToken)
    {
        hosts.TryRemove(agentId, out _);
        return Task.CompletedTask;
    }
}

/// <summary>One Redis hash per host; a replayed (older) value never overwrites a newer one.</summary>
sealed class RedisLatestMetrics(IConnectionMultiplexer redis, IOptions<RedisOptions> options) : ILatestMetrics
{
    const string SetIfNewer = """
        for i = 1, #ARGV, 2 do
          local old = redis.call('HGET', KEYS[1], ARGV[i])
          local newTime = tonumber(string.match(ARGV[i + 1], '^(-?%d+)|'))
          local oldTime = old and tonumber(string.match(old, '^(-?%d+)|')) or nil
          if not oldTime or (newTime and newTime >= oldTime) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
        end
        return 1
        """;

    RedisKey Key(string agentId) => $"{options.Value.KeyPrefix}latest:{agentId}";

    public async Task SetAsync(string agentId, IReadOnlyList<MetricSample> samples, IReadOnlyList<ProbeResult> probes, CancellationToken cancellationToken)
    {
        var args = new List<RedisValue>(2 * (samples.Count + probes.Count));
        foreach (var s in samples) { args.Add(LatestFields.Sample(s)); args.Add(LatestFields.SampleValue(s)); }
        foreach (var p in probes) { args.Add(LatestFields.Probe(p)); args.Add(LatestFields.ProbeValue(p)); }
        if (args.Count > 0)
            await redis.GetDatabase().ScriptEvaluateAsync(SetIfNewer, [Key(agentId)], [.. args]);
    }

    public async Task<IReadOnlyDictionary<string, LatestValues>> GetAsync(IReadOnlyCollection<string> agentIds, CancellationToken cancellationToken)
    {
        var db = redis.GetDatabase();
        var ids = agentIds.ToList();
        var reads = ids.Select(id => db.HashGetAllAsync(Key(id))).ToList();
        var result = new Dictionary<string, LatestValues>();
        for (var i = 0; i < ids.Count; i++)
        {
            var entries = await reads[i];
            if (entries.Length > 0)
                result[ids[i]] = LatestFields.Decode(entries.Select(e => new KeyValuePair<string, string>(e.Name.ToString(), e.Value.ToString())));
        }
        return result;
    }

    public Task ForgetAsync(string agentId, CancellationToken cancellationToken) => redis.GetDatabase().KeyDeleteAsync(Key(agentId));
}
