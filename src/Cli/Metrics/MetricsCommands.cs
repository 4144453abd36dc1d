using Fleet.Cli.Agents;
using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Cli.Metrics;

/// <summary><c>fleetctl top</c> (the fleet at a glance) and <c>fleetctl metrics HOST NAME</c> (one metric's recent history on one host).</summary>
internal static class MetricsCommands
{
    /// <summary>Ratios at or above this are marked with <see cref="Alert"/>, so a scan (or grep) finds them.</summary>
    public const double AlertRatio = 0.90;

    public const string Alert = "!";

    /// <summary>Shown for a series the host has stopped sending while it is still connected (the coordinator's "stale").</summary>
    public const string NoData = "no data";

    /// <summary>The metric names agents send.</summary>
    internal static readonly string[] KnownNames =
    [
        "cpu.usage", "memory.used_ratio", "memory.used_bytes", "memory.total_bytes", "disk.used_ratio", "disk.stuck",
        "load.1m", "load.5m", "load.15m", "network.rx_bytes_per_second", "network.tx_bytes_per_second",
    ];

    /// <summary>What the <c>top</c> table shows; JSON output asks for everything.</summary>
    private static readonly string[] TopNames = ["cpu.usage", "memory.used_ratio", "disk.used_ratio", "disk.stuck", "load.1m"];

    private static readonly TimeSpan DefaultWatch = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan MinWatch = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan DefaultSince = TimeSpan.FromHours(1);

    /// <summary>The default step brings back at most about this many points per series.</summary>
    private const int TargetPoints = 120;

    /// <summary>The coordinator's largest step_seconds.</summary>
    private const int MaxStepSeconds = 86_400;

    private const int DefaultChartWidth = 60;

    public static Command BuildTop(CliContext context)
    {
        var json = new Option<bool>("--json") { Description = "Print the coordinator's full response as JSON (the REST API's field names) instead of a table" };
        // No DefaultValueFactory: absent means "print once"; a bare --watch means DefaultWatch (see ParseWatch).
        var watch = new Option<TimeSpan?>("--watch", "-w")
        {
            Description = $"Refresh every interval until Ctrl+C, e.g. --watch 5s [default interval: {DurationText.Format(DefaultWatch)}]",
            HelpName = "interval",
            Arity = ArgumentArity.ZeroOrOne,
            CustomParser = ParseWatch,
        };
        // For tests and scripts: stop after this many refreshes instead of at Ctrl+C.
        var watchCount = new Option<int?>("--watch-count") { Hidden = true, CustomParser = ParseWatchCount };
        var top = new Command("top", "The fleet at a glance: CPU, memory, fullest disk, load and failing probes per host, sorted by hostname. "
            + $"Values of {AlertRatio * 100:0}% or more end in '{Alert}'") { json, watch, watchCount };
        top.Validators.Add(result =>
        {
            if (result.GetResult(watchCount) is not null && result.GetResult(watch) is null) result.AddError("--watch-count needs --watch");
        });
        top.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Fleet.Protocol.V1.Metrics.MetricsClient(session.CallInvoker);
            var asJson = parse.GetValue(json);
            var request = new GetLatestMetricsRequest();
            if (!asJson) request.Names.AddRange(TopNames);

            if (parse.GetValue(watch) is not { } interval)
            {
                var response = await client.GetLatestMetricsAsync(request, cancellationToken: ct);
                await WriteOverviewAsync(session.Out, context.Environment.Error, response, asJson);
                return ExitCodes.Ok;
            }

            var terminal = Terminal.IsTerminal(session.Out);
            var count = parse.GetValue(watchCount);
            try
            {
                for (var refresh = 1; ; refresh++)
                {
                    var response = await client.GetLatestMetricsAsync(request, cancellationToken: ct);
                    if (terminal)
                    {
                        await session.Out.WriteAsync(Terminal.ClearScreen);
                        await session.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                            $"Every {DurationText.Format(interval)}: fleetctl top    {session.Time.GetUtcNow():yyyy-MM-dd HH:mm:ss}Z"));
                        await session.Out.WriteLineAsync();
                    }
                    else if (refresh > 1)
                    {
                        await session.Out.WriteLineAsync();
                    }
                    await WriteOverviewAsync(session.Out, context.Environment.Error, response, asJson);
                    await session.Out.FlushAsync(ct);
                    if (refresh == count) return ExitCodes.Ok;
                    await Task.Delay(interval, session.Time, ct);
                }
            }
            catch (Exception ex) when (ct.IsCancellationRequested && ex is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
            {
                // Ctrl+C is how a watch ends, not a failure.
                return ExitCodes.Ok;
            }
        }, ct));
        return top;
    }

    private static async Task WriteOverviewAsync(TextWriter output, TextWriter error, GetLatestMetricsResponse response, bool asJson)
    {
        var hosts = response.Hosts
            .OrderBy(h => h.Hostname, StringComparer.OrdinalIgnoreCase)
            .ThenBy(h => h.Hostname, StringComparer.Ordinal)
            .ThenBy(h => h.AgentId, StringComparer.Ordinal)
            .ToList();
        if (asJson)
        {
            var sorted = new GetLatestMetricsResponse();
            sorted.Hosts.AddRange(hosts);
            ProtoJson.Write(output, sorted);
            return;
        }
        if (hosts.Count == 0)
        {
            await error.WriteLineAsync("No hosts.");
            return;
        }
        var table = new TextTable("HOST", "STATUS", "CPU", "MEM", "DISK", "LOAD", "PROBES");
        foreach (var host in hosts) table.AddRow(OverviewRow(host));
        table.WriteTo(output);
    }

    internal static string[] OverviewRow(HostMetrics host)
    {
        var name = host.Hostname.Length > 0 ? host.Hostname : host.AgentId;
        var status = AgentsCommands.StatusWord(host.Status);
        // An offline host's newest values are history, not its state: show none rather than old numbers.
        if (host.Status == AgentStatus.Offline) return [name, status, "-", "-", "-", "-", "-"];
        return
        [
            name,
            status,
            Latest(Newest(host, "cpu.usage", s => !s.Labels.ContainsKey("cpu")), s => Percent(s.Value)),
            Latest(Newest(host, "memory.used_ratio"), s => Percent(s.Value)),
            Disk(host),
            Latest(Newest(host, "load.1m"), s => s.Value.ToString("0.00", CultureInfo.InvariantCulture)),
            Probes(host),
        ];
    }

    private static LatestSample? Newest(HostMetrics host, string name, Func<LatestSample, bool>? where = null) =>
        host.Samples
            .Where(s => s.Name == name && (where is null || where(s)))
            .OrderBy(s => s.Stale)
            .ThenByDescending(s => s.Time?.ToDateTimeOffset() ?? DateTimeOffset.MinValue)
            .FirstOrDefault();

    private static string Latest(LatestSample? sample, Func<LatestSample, string> format) =>
        sample is null ? "-" : sample.Stale ? NoData : format(sample);

    /// <summary>A ratio as a whole percentage, marked when the shown number is at or above the alert threshold: "42%", "91%!".</summary>
    internal static string Percent(double ratio)
    {
        var percent = Math.Round(ratio * 100, MidpointRounding.AwayFromZero);
        var text = percent.ToString("0", CultureInfo.InvariantCulture) + "%";
        return percent >= AlertRatio * 100 ? text + Alert : text;
    }

    /// <summary>The fullest mount ("91%! /var"), then any mounts whose checks hang ("/mnt/nfs stuck!").</summary>
    private static string Disk(HostMetrics host)
    {
        var disks = host.Samples.Where(s => s.Name == "disk.used_ratio").ToList();
        var fullest = disks.Where(s => !s.Stale)
            .OrderByDescending(s => s.Value)
            .ThenBy(Mount, StringComparer.Ordinal)
            .Select(s => $"{Percent(s.Value)} {Mount(s)}")
            .FirstOrDefault() ?? (disks.Count > 0 ? NoData : "-");

        var stuck = host.Samples.Where(s => s.Name == "disk.stuck" && !s.Stale && s.Value >= 0.5).Select(Mount).Distinct().Order(StringComparer.Ordinal).ToList();
        if (stuck.Count == 0) return fullest;
        var stuckText = $"{string.Join(", ", stuck)} stuck{Alert}";
        return fullest == "-" ? stuckText : $"{fullest}, {stuckText}";
    }

    private static string Mount(LatestSample sample) => sample.Labels.TryGetValue("mount", out var mount) && mount.Length > 0 ? mount : "?";

    /// <summary>"ok", "-" when the host has no probes, else "2 failing: app, db".</summary>
    private static string Probes(HostMetrics host)
    {
        if (host.Probes.Count == 0) return "-";
        var failing = host.Probes.Where(p => !p.Ok).Select(p => p.Name).Distinct().Order(StringComparer.Ordinal).ToList();
        return failing.Count == 0 ? "ok" : $"{failing.Count} failing: {string.Join(", ", failing)}";
    }

    public static Command Build(CliContext context)
    {
        var host = new Argument<string>("host") { Description = "The agent: its ID, or its hostname when exactly one agent has it" };
        host.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && string.IsNullOrWhiteSpace(result.Tokens[0].Value)) result.AddError("the host must not be empty");
        });
        var name = new Argument<string>("name") { Description = $"The metric: {string.Join(", ", KnownNames)}" };
        name.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && string.IsNullOrWhiteSpace(result.Tokens[0].Value)) result.AddError("the metric name must not be empty");
        });
        // No DefaultValueFactory for the durations: help would print them as 01:00:00.
        var since = new Option<TimeSpan?>("--since")
        {
            Description = $"How far back from now, e.g. 15m, 6h, 7d [default: {DurationText.Format(DefaultSince)}]",
            HelpName = "duration",
            CustomParser = ParseSince,
        };
        var step = new Option<TimeSpan?>("--step")
        {
            Description = $"Average the samples per step of this length, e.g. 10s, 5m [default: --since/{TargetPoints} rounded up to 10s]",
            HelpName = "duration",
            CustomParser = ParseStep,
        };
        var table = new Option<bool>("--table") { Description = "Print time/value rows instead of a chart" };
        var json = new Option<bool>("--json") { Description = "Print the coordinator's response as JSON (the REST API's field names)" };
        var metrics = new Command("metrics", "One metric's recent history on one host: per series (one per label set, e.g. per CPU or mount) "
            + "min/avg/max/last and a one-line chart") { host, name, since, step, table, json };
        metrics.Validators.Add(result =>
        {
            if (result.GetResult(table) is not null && result.GetResult(json) is not null) result.AddError("--table and --json cannot be used together");
        });
        metrics.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var agent = await ResolveAgentAsync(new Fleet.Protocol.V1.Agents.AgentsClient(session.CallInvoker), parse.GetRequiredValue(host).Trim(), context.Environment.Error, ct);
            if (agent is null) return ExitCodes.Failure;

            var metricName = parse.GetRequiredValue(name).Trim();
            var window = parse.GetValue(since) ?? DefaultSince;
            var stepSeconds = parse.GetValue(step) is { } chosen ? (int)chosen.TotalSeconds : DefaultStepSeconds(window);
            var now = session.Time.GetUtcNow();
            // A --since reaching before 1970 means "everything"; no sample is older.
            var from = window >= now - DateTimeOffset.UnixEpoch ? DateTimeOffset.UnixEpoch : now - window;
            var request = new QueryMetricsRequest
            {
                AgentId = agent.Id,
                Name = metricName,
                From = Timestamp.FromDateTimeOffset(from),
                To = Timestamp.FromDateTimeOffset(now),
                StepSeconds = stepSeconds,
            };
            var response = await new Fleet.Protocol.V1.Metrics.MetricsClient(session.CallInvoker).QueryMetricsAsync(request, cancellationToken: ct);
            if (parse.GetValue(json))
            {
                ProtoJson.Write(session.Out, response);
                return ExitCodes.Ok;
            }

            var series = response.Series.Where(s => s.Points.Count > 0).OrderBy(LabelText, NaturalOrder).ToList();
            var span = Span(window);
            if (series.Count == 0)
            {
                var hint = KnownNames.Contains(metricName, StringComparer.Ordinal) ? "" : $" Agents send: {string.Join(", ", KnownNames)}.";
                await context.Environment.Error.WriteLineAsync($"No {metricName} samples from {Describe(agent)} in the last {span}.{hint}");
                return ExitCodes.Ok;
            }

            await session.Out.WriteLineAsync($"{metricName} on {Describe(agent)}, last {span} in {Span(TimeSpan.FromSeconds(stepSeconds))} steps");
            var width = Terminal.Width(session.Out) ?? DefaultChartWidth;
            foreach (var one in series)
            {
                await session.Out.WriteLineAsync();
                await session.Out.WriteLineAsync($"{SeriesTitle(one)}  {Stats(metricName, one)}");
                if (parse.GetValue(table))
                {
                    var rows = new TextTable("TIME", "VALUE");
                    foreach (var point in one.Points) rows.AddRow(Time(point.Time), Value(metricName, point.Value));
                    rows.WriteTo(session.Out);
                }
                else
                {
                    await session.Out.WriteLineAsync(Sparkline.Render([.. one.Points.Select(p => p.Value)], width));
                }
            }
            return ExitCodes.Ok;
        }, ct));
        return metrics;
    }

    /// <summary>An agent ID wins; otherwise the one agent with that hostname (case-insensitive). Anything else is reported and yields null.</summary>
    private static async Task<Agent?> ResolveAgentAsync(Fleet.Protocol.V1.Agents.AgentsClient client, string host, TextWriter error, CancellationToken ct)
    {
        var agents = (await client.ListAgentsAsync(new ListAgentsRequest(), cancellationToken: ct)).Agents;
        if (agents.FirstOrDefault(a => a.Id == host) is { } byId) return byId;

        var byHostname = agents.Where(a => string.Equals(a.Hostname, host, StringComparison.OrdinalIgnoreCase)).OrderBy(a => a.Id, StringComparer.Ordinal).ToList();
        switch (byHostname.Count)
        {
            case 1:
                return byHostname[0];
            case 0:
                await error.WriteLineAsync($"fleetctl: not found: no agent has the ID or hostname '{host}'");
                return null;
            default:
                var candidates = byHostname.Select(a => $"{a.Id} ({a.Hostname}, {AgentsCommands.StatusWord(a.Status)})");
                await error.WriteLineAsync($"fleetctl: hostname '{host}' matches {byHostname.Count} agents: {string.Join(", ", candidates)}; pass the agent ID instead");
                return null;
        }
    }

    private static string Describe(Agent agent) => agent.Hostname.Length > 0 ? $"{agent.Hostname} ({agent.Id})" : agent.Id;

    /// <summary>since/120 rounded up to a multiple of 10 s, within the coordinator's range.</summary>
    internal static int DefaultStepSeconds(TimeSpan since) =>
        (int)Math.Clamp(Math.Ceiling(since.TotalSeconds / TargetPoints / 10) * 10, 10, MaxStepSeconds);

    private static string LabelText(Series series) =>
        string.Join(", ", series.Labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"));

    private static string SeriesTitle(Series series) => series.Labels.Count == 0 ? "(no labels)" : LabelText(series);

    private static string Stats(string name, Series series)
    {
        var values = series.Points.Select(p => p.Value).Where(double.IsFinite).ToList();
        if (values.Count == 0) return $"no numeric values ({Count(series.Points.Count)})";
        return $"min {Value(name, values.Min())}  avg {Value(name, values.Average())}  max {Value(name, values.Max())}  last {Value(name, values[^1])}  ({Count(series.Points.Count)})";
    }

    private static string Count(int points) => points == 1 ? "1 point" : $"{points.ToString(CultureInfo.InvariantCulture)} points";

    /// <summary>A value in the metric's unit: ratios as percentages, *_bytes in IEC units, *_bytes_per_second per second, the rest as numbers.</summary>
    internal static string Value(string name, double value)
    {
        if (!double.IsFinite(value)) return value.ToString(CultureInfo.InvariantCulture);
        if (name == "cpu.usage" || name.EndsWith("_ratio", StringComparison.Ordinal)) return (value * 100).ToString("0.#", CultureInfo.InvariantCulture) + "%";
        if (name.EndsWith("_bytes_per_second", StringComparison.Ordinal)) return Bytes(value) + "/s";
        if (name.EndsWith("_bytes", StringComparison.Ordinal)) return Bytes(value);
        return value.ToString("0.##", CultureInfo.InvariantCulture);
    }

    private static readonly string[] ByteUnits = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

    private static string Bytes(double value)
    {
        var unit = 0;
        while (Math.Abs(value) >= 1024 && unit < ByteUnits.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        return value.ToString(unit == 0 ? "0" : "0.#", CultureInfo.InvariantCulture) + " " + ByteUnits[unit];
    }

    private static string Time(Timestamp? time) =>
        time is null ? "" : time.ToDateTimeOffset().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>"1h", "7d", "90m", "30s": whole days as days, the rest as <see cref="DurationText.Format"/> does.</summary>
    private static string Span(TimeSpan span) =>
        span >= TimeSpan.FromDays(1) && span.Ticks % TimeSpan.TicksPerDay == 0
            ? $"{span.TotalDays.ToString("0", CultureInfo.InvariantCulture)}d"
            : DurationText.Format(span);

    /// <summary>Label sets with numbers in numeric order: cpu=2 before cpu=10.</summary>
    private static readonly Comparer<string> NaturalOrder = Comparer<string>.Create(static (a, b) =>
    {
        int i = 0, j = 0;
        while (i < a.Length && j < b.Length)
        {
            if (char.IsAsciiDigit(a[i]) && char.IsAsciiDigit(b[j]))
            {
                var startA = i;
                var startB = j;
                while (i < a.Length && char.IsAsciiDigit(a[i])) i++;
                while (j < b.Length && char.IsAsciiDigit(b[j])) j++;
                var numberA = a.AsSpan(startA, i - startA).TrimStart('0');
                var numberB = b.AsSpan(startB, j - startB).TrimStart('0');
                var byNumber = numberA.Length != numberB.Length ? numberA.Length.CompareTo(numberB.Length) : numberA.SequenceCompareTo(numberB);
                if (byNumber != 0) return byNumber;
                continue;
            }
            var byChar = a[i].CompareTo(b[j]);
            if (byChar != 0) return byChar;
            i++;
            j++;
        }
        return (a.Length - i).CompareTo(b.Length - j);
    });

    private static TimeSpan? ParseWatch(ArgumentResult result)
    {
        if (result.Tokens.Count == 0) return DefaultWatch;
        var raw = result.Tokens[^1].Value;
        if (DurationText.TryParseAge(raw, out var value) && value >= MinWatch) return value;
        result.AddError($"invalid --watch value '{raw}': expected an interval of at least {DurationText.Format(MinWatch)}, such as 2s or 1m");
        return DefaultWatch;
    }

    private static int? ParseWatchCount(ArgumentResult result)
    {
        var raw = result.Tokens[^1].Value;
        if (int.TryParse(raw.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count > 0) return count;
        result.AddError($"invalid --watch-count value '{raw}': expected a positive whole number");
        return null;
    }

    private static TimeSpan? ParseSince(ArgumentResult result)
    {
        var raw = result.Tokens[^1].Value;
        if (DurationText.TryParseAge(raw, out var value)) return value;
        result.AddError($"invalid --since value '{raw}': expected a positive duration such as 15m, 6h or 7d");
        return null;
    }

    private static TimeSpan? ParseStep(ArgumentResult result)
    {
        var raw = result.Tokens[^1].Value;
        if (DurationText.TryParseAge(raw, out var value) && value.Ticks % TimeSpan.TicksPerSecond == 0 && value.TotalSeconds <= MaxStepSeconds) return value;
        result.AddError($"invalid --step value '{raw}': expected whole seconds from 1s to 24h, such as 10s, 5m or 1h");
        return null;
    }
}
