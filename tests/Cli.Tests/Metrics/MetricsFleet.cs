using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Tests.Metrics;

/// <summary>Latest metrics for <see cref="TestFleet.Agents"/> plus one host that has sent nothing yet, at fixed times.</summary>
public static class MetricsFleet
{
    public static GetLatestMetricsResponse Latest() => new()
    {
        // Deliberately unsorted: sorting is the CLI's job.
        Hosts =
        {
            new HostMetrics
            {
                AgentId = "a-web2", Hostname = "web-02", Status = AgentStatus.Online,
                Samples =
                {
                    Sample("cpu.usage", 0.42),
                    Sample("cpu.usage", 0.97, ("cpu", "0")),
                    Sample("cpu.usage", 0.05, ("cpu", "1")),
                    Sample("memory.used_ratio", 0.935),
                    Sample("disk.used_ratio", 0.40, ("mount", "/")),
                    Sample("disk.used_ratio", 0.91, ("mount", "/var")),
                    Sample("disk.used_ratio", 0.12, ("mount", "/boot")),
                    Sample("disk.stuck", 0, ("mount", "/var")),
                    Sample("load.1m", 1.5),
                    Sample("load.5m", 1.2),
                    Sample("network.rx_bytes_per_second", 2048, ("interface", "eth0")),
                },
                Probes = { Probe("http", ok: true), Probe("db", ok: false, "connection refused"), Probe("app", ok: false, "HTTP 503") },
            },
            new HostMetrics
            {
                // Offline: the coordinator still has its last values, which are history, not state.
                AgentId = "a-db1", Hostname = "db-01", Status = AgentStatus.Offline,
                Samples = { Sample("cpu.usage", 0.99), Sample("memory.used_ratio", 0.95), Sample("disk.used_ratio", 0.97, ("mount", "/")), Sample("load.1m", 9) },
                Probes = { Probe("db", ok: false, "timeout") },
            },
            new HostMetrics
            {
                AgentId = "a-web1", Hostname = "Web-01", Status = AgentStatus.Online,
                Samples =
                {
                    Sample("cpu.usage", 0.33, stale: true),
                    Sample("memory.used_ratio", 0.5),
                    Sample("disk.used_ratio", 0.2, ("mount", "/")),
                    Sample("disk.used_ratio", 0.99, stale: true, ("mount", "/data")),
                    Sample("disk.stuck", 1, ("mount", "/mnt/nfs")),
                    Sample("load.1m", 0.25),
                },
                Probes = { Probe("http", ok: true) },
            },
            new HostMetrics { AgentId = "a-cache1", Hostname = "cache-01", Status = AgentStatus.Online },
        },
    };

    public static LatestSample Sample(string name, double value, params (string Key, string Value)[] labels) => Sample(name, value, false, labels);

    public static LatestSample Sample(string name, double value, bool stale, params (string Key, string Value)[] labels)
    {
        var sample = new LatestSample { Name = name, Value = value, Stale = stale, Time = At(stale ? TestFleet.Now.AddMinutes(-5) : TestFleet.Now.AddSeconds(-5)) };
        foreach (var (key, labelValue) in labels) sample.Labels[key] = labelValue;
        return sample;
    }

    private static LatestProbe Probe(string name, bool ok, string reason = "") =>
        new() { Name = name, Ok = ok, LatencyMs = ok ? 12.5 : 0, Reason = reason, Time = At(TestFleet.Now.AddSeconds(-3)) };

    /// <summary>A series with one point per step, ending at <see cref="TestFleet.Now"/>.</summary>
    public static Series Series(IEnumerable<double> values, TimeSpan step, params (string Key, string Value)[] labels)
    {
        var list = values.ToList();
        var series = new Series();
        foreach (var (key, value) in labels) series.Labels[key] = value;
        for (var i = 0; i < list.Count; i++)
        {
            series.Points.Add(new SeriesPoint { Time = At(TestFleet.Now - step * (list.Count - 1 - i)), Value = list[i] });
        }
        return series;
    }

    public static Timestamp At(DateTimeOffset time) => Timestamp.FromDateTimeOffset(time);

    /// <summary>Splits a text table into cells by the header's column starts (cells may contain spaces), keyed by header.</summary>
    public static List<Dictionary<string, string>> Rows(IReadOnlyList<string> lines)
    {
        var header = lines[0];
        var names = header.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var starts = names.Select(n => header.IndexOf(n, StringComparison.Ordinal)).ToArray();
        return lines.Skip(1).Select(line => names.Select((name, i) =>
        {
            var start = Math.Min(starts[i], line.Length);
            var end = i + 1 < starts.Length ? Math.Min(starts[i + 1], line.Length) : line.Length;
            return (name, cell: line[start..end].Trim());
        }).ToDictionary(c => c.name, c => c.cell)).ToList();
    }
}
