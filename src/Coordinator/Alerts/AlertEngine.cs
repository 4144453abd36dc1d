using System.Collections.Concurrent;
using System.Globalization;
using System.Threading.Channels;
using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Checklists;
using Fleet.Coordinator.Logs;
using Fleet.Coordinator.Metrics;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Schedules;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Alerts;

/// <summary>
/// Evaluates the rules. Threshold and probe rules run as batches commit (the ingest's post-commit hook queues them:
/// no evaluation-interval wait); a timer promotes pending alerts whose <c>for</c> has passed and evaluates the rules
/// that look at the whole fleet (offline, predicted exhaustion, failed runs, log rates, dropped outbox data, missed
/// maintenance windows and checklist items, expiring TLS certificates, watchdog).
/// Log and agent-event batches also trigger their rules right away.
/// </summary>
public sealed partial class AlertEngine(
    IDbContextFactory<FleetDbContext> dbFactory, AlertStore store, AlertRuleSet rules, DefaultRules defaults, IAgentPresence presence,
    ILatestMetrics latestMetrics, ChecklistStatus checklists, IOptions<SchedulesOptions> scheduleOptions, IOptions<AlertsOptions> options,
    TimeProvider time, ILogger<AlertEngine> logger) : BackgroundService, IBatchCommittedHook
{
    /// <summary>The probe kind whose results carry <see cref="TlsDaysLeft"/> (the agent's <c>tls</c> probe).</summary>
    public const string TlsProbeKind = "tls";

    /// <summary>The value a <c>tls</c> probe result reports: days until the certificate's notAfter, at the probe's time.</summary>
    public const string TlsDaysLeft = "tls.days_left";

    public const string OutboxDroppedKind = "outbox.dropped";
    const int MaxQueued = 50_000;
    readonly Channel<(string AgentId, Batch Batch)> queue = Channel.CreateBounded<(string, Batch)>(
        new BoundedChannelOptions(MaxQueued) { SingleReader = true, FullMode = BoundedChannelFullMode.DropWrite });
    readonly ConcurrentDictionary<string, string> hostnames = new();
    readonly ConcurrentDictionary<long, DateTime> lastFullEvaluation = new();
    readonly ConcurrentDictionary<long, DateTime> lastIngestEvaluation = new();

    /// <summary>Stands for a committed log batch: the log rules query the table, so the entries themselves are not kept.</summary>
    static readonly Batch LogsArrived = new() { Logs = new LogBatch() };
    static readonly Batch OutboxDropped = new() { Events = new AgentEvents { Events = { new AgentEvent { Kind = OutboxDroppedKind } } } };

    public void Committed(IReadOnlyList<(string AgentId, Batch Batch)> batches)
    {
        foreach (var (agentId, batch) in batches)
        {
            var queued = batch.PayloadCase switch
            {
                Batch.PayloadOneofCase.Metrics => batch,
                Batch.PayloadOneofCase.Logs => LogsArrived,
                Batch.PayloadOneofCase.Events when batch.Events.Events.Any(e => e.Kind == OutboxDroppedKind) => OutboxDropped,
                _ => null,
            };
            if (queued is not null && !queue.Writer.TryWrite((agentId, queued)))
                LogQueueFull(agentId);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            if (options.Value.DefaultRules) await defaults.EnsureLoadedAsync(stoppingToken);
            await rules.ReloadAsync(stoppingToken);
            await store.RefreshAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { return; }
        var ingest = ReadIngestAsync(stoppingToken);
        using var timer = new PeriodicTimer(options.Value.EvaluationInterval, time);
        try
        {
            do
            {
                try { await TickAsync(stoppingToken); }
                catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                {
                    // A database or Redis outage (or a bug) costs this pass, never the evaluator or the coordinator.
                    LogTickFailed(ex);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
        await ingest;
    }

    async Task ReadIngestAsync(CancellationToken stoppingToken)
    {
        var group = new List<(string AgentId, Batch Batch)>();
        try
        {
            while (await queue.Reader.WaitToReadAsync(stoppingToken))
            {
                group.Clear();
                while (group.Count < 1000 && queue.Reader.TryRead(out var b)) group.Add(b);
                try { await EvaluateBatchesAsync(group, stoppingToken); }
                catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                {
                    LogIngestEvaluationFailed(ex);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
    }

    /// <summary>Evaluates the rules that committed batches concern (threshold, probe; log and outbox rules when such data arrived).</summary>
    public async Task EvaluateBatchesAsync(IReadOnlyList<(string AgentId, Batch Batch)> batches, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var current = rules.Current;
        foreach (var rule in current.Where(r => r.Kind == RuleKinds.Threshold))
        {
            var latest = new Dictionary<(string, string), (MetricSample Sample, List<KeyValuePair<string, string>> Labels)>();
            foreach (var (agentId, batch) in batches)
            {
                if (batch.PayloadCase != Batch.PayloadOneofCase.Metrics) continue;
                foreach (var s in batch.Metrics.Samples)
                {
                    if (s.Name != rule.Metric) continue;
                    var labels = s.Labels.ToList();
                    if (!rule.MatchesSeries(s.Name, labels)) continue;
                    var key = (agentId, MetricLabels.Canonical(labels));
                    if (!latest.TryGetValue(key, out var old) || old.Sample.TimeUnixMs <= s.TimeUnixMs) latest[key] = (s, labels);
                }
            }
            if (latest.Count == 0) continue;
            var signals = new List<AlertSignal>();
            foreach (var ((agentId, _), (sample, labels)) in latest)
                signals.Add(new AlertSignal(await LabelsAsync(rule, agentId, labels, cancellationToken), rule.Evaluate(sample.Value), sample.Value));
            var changing = signals.Where(s => store.MayChange(rule, s, now)).ToList();
            if (changing.Count > 0) await store.ApplyAsync(rule, changing, complete: false, now, cancellationToken);
        }
        foreach (var rule in current.Where(r => r.Kind == RuleKinds.Probe))
        {
            var signals = new List<AlertSignal>();
            foreach (var (agentId, batch) in batches)
            {
                if (batch.PayloadCase != Batch.PayloadOneofCase.Metrics) continue;
                foreach (var probe in batch.Metrics.Probes.GroupBy(p => p.Name))
                {
                    if (rule.Metric != "*" && rule.Metric != probe.Key) continue;
                    // Newest result OK: no run of failures, so no history query (the common case on the ingest path).
                    var newest = probe.MaxBy(p => p.TimeUnixMs)!;
                    signals.Add(newest.Ok
                        ? new AlertSignal(await LabelsAsync(rule, agentId, [new("probe", probe.Key)], cancellationToken), Condition.Inactive, 0)
                        : await ProbeSignalAsync(rule, agentId, probe.Key, cancellationToken));
                }
            }
            var changing = signals.Where(s => store.MayChange(rule, s, now)).ToList();
            if (changing.Count > 0) await store.ApplyAsync(rule, changing, complete: false, now, cancellationToken);
        }
        var logs = batches.Any(b => b.Batch.PayloadCase == Batch.PayloadOneofCase.Logs);
        var dropped = batches.Any(b => b.Batch.PayloadCase == Batch.PayloadOneofCase.Events && b.Batch.Events.Events.Any(e => e.Kind == OutboxDroppedKind));
        foreach (var rule in current.Where(r => (logs && r.Kind == RuleKinds.LogRate) || (dropped && r.Kind == RuleKinds.OutboxDropped)))
        {
            // At most once a second per rule (every 5 s for rules counting per log field, which read rows, not counts): a burst
            // of log batches costs one query, not one per batch (the timer catches the rest).
            var gap = rule.Kind == RuleKinds.LogRate && rule.ByField.StartsWith("fields.", StringComparison.Ordinal) ? TimeSpan.FromSeconds(5) : TimeSpan.FromSeconds(1);
            if (lastIngestEvaluation.TryGetValue(rule.Id, out var last) && now - last < gap) continue;
            lastIngestEvaluation[rule.Id] = now;
            await EvaluateFullAsync(rule, now, cancellationToken);
        }
    }

    /// <summary>One timer pass: reload rules, learn other replicas' states, promote pending alerts, evaluate the fleet-wide rules.</summary>
    public async Task TickAsync(CancellationToken cancellationToken)
    {
        await rules.ReloadAsync(cancellationToken);
        await store.RefreshAsync(cancellationToken);
        hostnames.Clear();
        var now = time.GetUtcNow().UtcDateTime;
        var current = rules.Current;
        var onIngest = current.Where(r => RuleKinds.OnIngest(r.Kind) && r.For > TimeSpan.Zero).ToDictionary(r => r.Id);
        if (onIngest.Count > 0)
        {
            var ids = onIngest.Keys.ToList();
            await using var db = dbFactory.CreateDbContext();
            var pending = await db.Set<AlertRecord>().AsNoTracking()
                .Where(a => a.State == AlertStates.Pending && ids.Contains(a.RuleId)).ToListAsync(cancellationToken);
            foreach (var group in pending.GroupBy(a => a.RuleId))
            {
                var rule = onIngest[group.Key];
                var due = group.Where(a => now - (a.ActiveSince ?? now) >= rule.For)
                    .Select(a => new AlertSignal(AlertLabels.Parse(a.LabelsJson), Condition.Active, a.Value)).ToList();
                if (due.Count > 0) await store.ApplyAsync(rule, due, complete: false, now, cancellationToken);
            }
        }
        await ResolveStaleAsync(current.Where(r => r.Kind == RuleKinds.Threshold).ToDictionary(r => r.Id), now, cancellationToken);
        foreach (var rule in current.Where(r => !RuleKinds.OnIngest(r.Kind)))
        {
            if (rule.Kind == RuleKinds.Predict && lastFullEvaluation.TryGetValue(rule.Id, out var last) && now - last < options.Value.PredictInterval)
                continue;
            await EvaluateFullAsync(rule, now, cancellationToken);
        }
    }

    /// <summary>
    /// Open threshold alerts whose series stopped reporting (a mount gone, a metric renamed) resolve once its newest
    /// sample is older than <see cref="AlertsOptions.StaleAfter"/>. A series this replica has no latest value for
    /// (just started, no Redis) is left alone: unknown is not stale.
    /// </summary>
    async Task ResolveStaleAsync(Dictionary<long, CompiledRule> thresholds, DateTime now, CancellationToken cancellationToken)
    {
        if (thresholds.Count == 0) return;
        var ids = thresholds.Keys.ToList();
        List<AlertRecord> open;
        await using (var db = dbFactory.CreateDbContext())
            open = await db.Set<AlertRecord>().AsNoTracking()
                .Where(a => (a.State == AlertStates.Pending || a.State == AlertStates.Firing) && ids.Contains(a.RuleId)).ToListAsync(cancellationToken);
        if (open.Count == 0) return;
        var labelsOf = open.ToDictionary(a => a.Id, a => AlertLabels.Parse(a.LabelsJson));
        var agents = labelsOf.Values.Select(l => l.GetValueOrDefault("agent_id")).OfType<string>().Distinct().ToList();
        var latest = await latestMetrics.GetAsync(agents, cancellationToken);
        foreach (var group in open.GroupBy(a => a.RuleId))
        {
            var rule = thresholds[group.Key];
            var newest = new Dictionary<string, DateTime>();
            foreach (var agentId in group.Select(a => labelsOf[a.Id].GetValueOrDefault("agent_id")).OfType<string>().Distinct())
            {
                if (!latest.TryGetValue(agentId, out var values)) continue;
                foreach (var sample in values.Samples.Where(x => x.Name == rule.Metric))
                    newest[AlertLabels.Fingerprint(await LabelsAsync(rule, agentId, MetricLabels.Parse(sample.Labels), cancellationToken))] = sample.Time;
            }
            var stale = group.Where(a => newest.TryGetValue(a.Fingerprint, out var t) && now - t > options.Value.StaleAfter)
                .Select(a => new AlertSignal(labelsOf[a.Id], Condition.Inactive, a.Value,
                    new Dictionary<string, string> { ["stale"] = $"no sample since {newest[a.Fingerprint]:O}" }))
                .ToList();
            if (stale.Count > 0) await store.ApplyAsync(rule, stale, complete: false, now, cancellationToken);
        }
    }

    async Task EvaluateFullAsync(CompiledRule rule, DateTime now, CancellationToken cancellationToken)
    {
        lastFullEvaluation[rule.Id] = now;
        var complete = true;
        var signals = rule.Kind switch
        {
            RuleKinds.Watchdog => [new AlertSignal(BaseLabels(rule), Condition.Active, 1)],
            RuleKinds.Offline => await OfflineSignalsAsync(rule, now, cancellationToken),
            RuleKinds.Predict => await PredictSignalsAsync(rule, now, cancellationToken),
            RuleKinds.RunFailed => await RunFailedSignalsAsync(rule, now, cancellationToken),
            RuleKinds.LogRate => await LogRateSignalsAsync(rule, now, c => complete = c, cancellationToken),
            RuleKinds.OutboxDropped => await OutboxSignalsAsync(rule, now, cancellationToken),
            RuleKinds.NotificationDead => await DeadNotificationSignalsAsync(rule, now, cancellationToken),
            RuleKinds.WindowMissed => await WindowMissedSignalsAsync(rule, now, cancellationToken),
            RuleKinds.ChecklistMissed => await ChecklistMissedSignalsAsync(rule, cancellationToken),
            RuleKinds.TlsExpiry => await TlsExpirySignalsAsync(rule, now, cancellationToken),
            _ => [],
        };
        // An evaluation that saw only part of the data (a row cap) may not resolve what it did not see.
        await store.ApplyAsync(rule, signals, complete, now, cancellationToken);
    }

    static Dictionary<string, string> BaseLabels(CompiledRule rule)
    {
        var labels = new Dictionary<string, string>(rule.Definition.Labels) { ["alertname"] = rule.Name };
        return labels;
    }

    async Task<Dictionary<string, string>> LabelsAsync(CompiledRule rule, string agentId, IEnumerable<KeyValuePair<string, string>> extra, CancellationToken cancellationToken)
    {
        var labels = BaseLabels(rule);
        foreach (var (k, v) in extra) labels[k] = v;
        labels["agent_id"] = agentId;
        labels["host"] = await HostnameAsync(agentId, cancellationToken);
        return labels;
    }

    async Task<string> HostnameAsync(string agentId, CancellationToken cancellationToken)
    {
        if (hostnames.TryGetValue(agentId, out var name)) return name;
        await using var db = dbFactory.CreateDbContext();
        name = await db.Agents.AsNoTracking().Where(a => a.Id == agentId).Select(a => a.Hostname).FirstOrDefaultAsync(cancellationToken) ?? agentId;
        hostnames[agentId] = name;
        return name;
    }

    async Task<AlertSignal> ProbeSignalAsync(CompiledRule rule, string agentId, string probe, CancellationToken cancellationToken)
    {
        var failures = rule.Definition.Failures > 0 ? rule.Definition.Failures : 3;
        await using var db = dbFactory.CreateDbContext();
        var recent = await db.Set<ProbeResultRecord>().AsNoTracking()
            .Where(p => p.AgentId == agentId && p.Name == probe)
            .OrderByDescending(p => p.Time).Take(failures)
            .Select(p => new { p.Ok, p.Reason, p.Target, p.Kind }).ToListAsync(cancellationToken);
        var consecutive = recent.TakeWhile(p => !p.Ok).Count();
        var labels = await LabelsAsync(rule, agentId, [new("probe", probe)], cancellationToken);
        var annotations = new Dictionary<string, string>
        {
            ["reason"] = recent.FirstOrDefault()?.Reason ?? "",
            ["target"] = recent.FirstOrDefault()?.Target ?? "",
        };
        return new AlertSignal(labels, consecutive >= failures ? Condition.Active : Condition.Inactive, consecutive, annotations);
    }

    async Task<List<AlertSignal>> OfflineSignalsAsync(CompiledRule rule, DateTime now, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var agents = await db.Agents.AsNoTracking().Select(a => new { a.Id, a.Hostname, a.LastSeen }).ToListAsync(cancellationToken);
        var online = await presence.GetAsync(agents.Select(a => a.Id).ToList(), cancellationToken);
        var signals = new List<AlertSignal>();
        foreach (var a in agents)
        {
            hostnames[a.Id] = a.Hostname;
            if (online.ContainsKey(a.Id)) continue;
            var gone = now - a.LastSeen;
            if (gone < rule.For) continue;
            var labels = BaseLabels(rule);
            labels["agent_id"] = a.Id;
            labels["host"] = a.Hostname;
            signals.Add(new AlertSignal(labels, Condition.Active, Math.Round(gone.TotalMinutes, 1),
                new Dictionary<string, string> { ["last_seen"] = a.LastSeen.ToString("O", CultureInfo.InvariantCulture) }));
        }
        return signals;
    }

    async Task<List<AlertSignal>> PredictSignalsAsync(CompiledRule rule, DateTime now, CancellationToken cancellationToken)
    {
        var since = now - rule.Window;
        var metric = rule.Metric;
        await using var db = dbFactory.CreateDbContext();
        var rows = await db.Set<MetricRollupRecord>().AsNoTracking()
            .Where(r => r.Resolution == 60 && r.Name == metric && r.Bucket >= since && r.Bucket <= now)
            .Select(r => new { r.AgentId, r.Labels, r.Bucket, r.Sum, r.Count }).ToListAsync(cancellationToken);
        var signals = new List<AlertSignal>();
        foreach (var series in rows.GroupBy(r => (r.AgentId, r.Labels)))
        {
            var labels = MetricLabels.Parse(series.Key.Labels);
            if (!rule.MatchesSeries(metric, labels)) continue;
            var points = series.Where(p => p.Count > 0).Select(p => (X: (p.Bucket.AddSeconds(30) - now).TotalHours, Y: p.Sum / p.Count)).ToList();
            if (points.Count < 5) continue;
            var eta = HoursUntil(points, rule.Threshold);
            if (eta is not { } hours || hours > rule.Within.TotalHours) continue;
            signals.Add(new AlertSignal(await LabelsAsync(rule, series.Key.AgentId, labels, cancellationToken), Condition.Active, Math.Round(hours, 2),
                new Dictionary<string, string> { ["eta"] = Protocol.Durations.Format(TimeSpan.FromMinutes(Math.Max(0, Math.Round(hours * 60)))) }));
        }
        return signals;
    }

    /// <summary>Hours from now until the least-squares line through the points reaches <paramref name="target"/>; 0 when already there, null when never.</summary>
    public static double? HoursUntil(IReadOnlyList<(double X, double Y)> points, double target)
    {
        var n = points.Count;
        var mx = points.Average(p => p.X);
        var my = points.Average(p => p.Y);
        var sxx = points.Sum(p => (p.X - mx) * (p.X - mx));
        if (sxx <= 0) return null;
        var slope = points.Sum(p => (p.X - mx) * (p.Y - my)) / sxx;
        var nowValue = my - slope * mx; // the line at x = 0 (now)
        if (nowValue >= target) return 0;
        if (slope <= 0 || n < 2) return null;
        return (target - nowValue) / slope;
    }

    async Task<List<AlertSignal>> RunFailedSignalsAsync(CompiledRule rule, DateTime now, CancellationToken cancellationToken)
    {
        var since = now - rule.Within;
        var task = rule.Metric;
        await using var db = dbFactory.CreateDbContext();
        var final = InvocationStates.Final;
        var query = from i in db.Invocations.AsNoTracking()
                    join r in db.Runs.AsNoTracking() on i.RunId equals r.Id
                    where i.FinishedAt != null && i.FinishedAt >= since && final.Contains(i.State) && (task == "*" || r.Task == task)
                    select new { r.Task, i.AgentId, i.Hostname, i.State, i.FinishedAt, i.RunId, i.ExitCode, i.Error };
        var rows = await query.ToListAsync(cancellationToken);
        var signals = new List<AlertSignal>();
        foreach (var g in rows.GroupBy(r => (r.Task, r.AgentId)))
        {
            var latest = g.OrderByDescending(r => r.FinishedAt).First();
            if (Array.IndexOf(InvocationStates.Errors, latest.State) < 0) continue;
            hostnames[latest.AgentId] = latest.Hostname;
            var labels = BaseLabels(rule);
            labels["task"] = latest.Task;
            labels["agent_id"] = latest.AgentId;
            labels["host"] = latest.Hostname;
            signals.Add(new AlertSignal(labels, Condition.Active, latest.ExitCode, new Dictionary<string, string>
            {
                ["run_id"] = latest.RunId,
                ["state"] = latest.State.ToString(),
                ["error"] = latest.Error.Length > 500 ? latest.Error[..500] : latest.Error,
            }));
        }
        return signals;
    }

    async Task<List<AlertSignal>> LogRateSignalsAsync(CompiledRule rule, DateTime now, Action<bool> sawEverything, CancellationToken cancellationToken)
    {
        var since = now - rule.Within;
        var filter = LogFilter.Parse("", "", rule.Definition.LogSeverity, rule.Definition.Query);
        await using var db = dbFactory.CreateDbContext();
        var entries = await filter.ApplyAsync(db, db.Set<LogEntryRecord>().AsNoTracking().Where(e => e.Time >= since && e.Time <= now), cancellationToken);
        var counts = new List<(string AgentId, string? Label, string? Value, int Count)>();
        if (rule.ByField.StartsWith("fields.", StringComparison.Ordinal))
        {
            var field = rule.ByField["fields.".Length..];
            var rows = await entries.Select(e => new { e.AgentId, e.FieldsJson }).Take(options.Value.MaxLogRowsPerEvaluation).ToListAsync(cancellationToken);
            if (rows.Count >= options.Value.MaxLogRowsPerEvaluation)
            {
                sawEverything(false);
                LogRowCapReached(rule.Name, rows.Count);
            }
            counts.AddRange(rows
                .Select(r => (r.AgentId, Value: AlertLabels.Parse(r.FieldsJson).GetValueOrDefault(field)))
                .Where(r => !string.IsNullOrEmpty(r.Value))
                .GroupBy(r => r) .Select(g => (g.Key.AgentId, (string?)LabelName(field), g.Key.Value, g.Count())));
        }
        else if (rule.ByField == "source")
        {
            var rows = await entries.GroupBy(e => new { e.AgentId, e.Source }).Select(g => new { g.Key.AgentId, g.Key.Source, Count = g.Count() }).ToListAsync(cancellationToken);
            counts.AddRange(rows.Select(r => (r.AgentId, (string?)"source", (string?)r.Source, r.Count)));
        }
        else
        {
            var rows = await entries.GroupBy(e => e.AgentId).Select(g => new { AgentId = g.Key, Count = g.Count() }).ToListAsync(cancellationToken);
            counts.AddRange(rows.Select(r => (r.AgentId, (string?)null, (string?)null, r.Count)));
        }
        var signals = new List<AlertSignal>();
        foreach (var (agentId, label, value, count) in counts)
        {
            if (count <= rule.Definition.MoreThan) continue;
            var extra = label is null ? [] : new List<KeyValuePair<string, string>> { new(label, value!) };
            signals.Add(new AlertSignal(await LabelsAsync(rule, agentId, extra, cancellationToken), Condition.Active, count,
                new Dictionary<string, string> { ["window"] = Protocol.Durations.Format(rule.Within) }));
        }
        return signals;
    }

    /// <summary>A log field name as a label name ("src.ip" -> "src_ip").</summary>
    static string LabelName(string field) => new(field.Select(c => char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_').ToArray());

    /// <summary>Notifications that used up their retry budget (dead) in the window, per receiver: the fan-out's own alarm.</summary>
    async Task<List<AlertSignal>> DeadNotificationSignalsAsync(CompiledRule rule, DateTime now, CancellationToken cancellationToken)
    {
        var since = now - rule.Within;
        await using var db = dbFactory.CreateDbContext();
        var rows = await db.Set<Notifications.NotificationRecord>().AsNoTracking()
            // NextAttemptAt of a dead row is when its last attempt was due: roughly when it died (a backlog or a long
            // Retry-After can make that long after it was created).
            .Where(n => n.State == Notifications.NotificationStates.Dead && n.NextAttemptAt >= since)
            .GroupBy(n => n.Receiver).Select(g => new { Receiver = g.Key, Count = g.Count(), Last = g.Max(n => n.Id) })
            .ToListAsync(cancellationToken);
        var signals = new List<AlertSignal>();
        foreach (var r in rows)
        {
            var error = await db.Set<Notifications.NotificationRecord>().AsNoTracking().Where(n => n.Id == r.Last).Select(n => n.LastError).SingleAsync(cancellationToken);
            var labels = BaseLabels(rule);
            labels["receiver"] = r.Receiver;
            signals.Add(new AlertSignal(labels, Condition.Active, r.Count, new Dictionary<string, string>
            {
                ["last_error"] = error is { Length: > 500 } e ? e[..500] : error ?? "",
                ["window"] = Protocol.Durations.Format(rule.Within),
            }));
        }
        return signals;
    }

    async Task<List<AlertSignal>> OutboxSignalsAsync(CompiledRule rule, DateTime now, CancellationToken cancellationToken)
    {
        var since = now - rule.Within;
        await using var db = dbFactory.CreateDbContext();
        var rows = await db.AgentEvents.AsNoTracking()
            .Where(e => e.Kind == OutboxDroppedKind && e.Time >= since)
            .GroupBy(e => e.AgentId).Select(g => new { AgentId = g.Key, Count = g.Count(), Last = g.Max(e => e.Time) })
            .ToListAsync(cancellationToken);
        var signals = new List<AlertSignal>();
        foreach (var r in rows)
            signals.Add(new AlertSignal(await LabelsAsync(rule, r.AgentId, [], cancellationToken), Condition.Active, r.Count,
                new Dictionary<string, string> { ["last_event"] = r.Last.ToString("O", CultureInfo.InvariantCulture) }));
        return signals;
    }

    static readonly OccurrenceState[] Decided = [OccurrenceState.Succeeded, OccurrenceState.Failed, OccurrenceState.Missed, OccurrenceState.Skipped];

    /// <summary>
    /// window_missed. For each enabled, unpaused schedule, the newest decided outcome counts: its newest closed occurrence
    /// (by fire time; run-now ones too), or a fire time that passed <c>MisfireThreshold + Interval</c> ago with no
    /// occurrence claimed at all (no replica runs the scheduler), whichever is newer. Open and waiting occurrences are not
    /// decided yet. The outcome is "missed" unless the occurrence succeeded with every step succeeded: Missed (misfire
    /// policy), Skipped (overlap, no step ran), Failed, or Succeeded with a step skipped (cutoff, task not offered).
    /// A Failed occurrence raises one alert per host whose step invocation did not succeed (labels schedule, host);
    /// anything else one alert for the schedule. An outcome decided within <c>within</c> fires; an older one only keeps
    /// an open alert firing (Hold), so a new rule does not page for old history. The next succeeded occurrence resolves.
    /// </summary>
    async Task<List<AlertSignal>> WindowMissedSignalsAsync(CompiledRule rule, DateTime now, CancellationToken cancellationToken)
    {
        var scope = rule.Scope;
        await using var db = dbFactory.CreateDbContext();
        var schedules = await db.Set<ScheduleRecord>().AsNoTracking()
            .Where(s => s.Enabled && !s.Paused && (scope == "*" || s.Id == scope)).ToListAsync(cancellationToken);
        if (schedules.Count == 0) return [];
        var ids = schedules.Select(s => s.Id).ToList();
        var decided = Decided;
        var newestTimes = db.Set<OccurrenceRecord>().Where(o => ids.Contains(o.ScheduleId) && decided.Contains(o.State))
            .GroupBy(o => o.ScheduleId).Select(g => new { ScheduleId = g.Key, Last = g.Max(o => o.ScheduledUtc) });
        var newest = (await (from o in db.Set<OccurrenceRecord>().AsNoTracking()
                             join l in newestTimes on new { o.ScheduleId, o.ScheduledUtc } equals new { l.ScheduleId, ScheduledUtc = l.Last }
                             where decided.Contains(o.State)
                             select o).ToListAsync(cancellationToken))
            .GroupBy(o => o.ScheduleId).ToDictionary(g => g.Key, g => g.First());

        // The newest fire time that should have been claimed by now: is there a row for it?
        var grace = scheduleOptions.Value.MisfireThreshold + scheduleOptions.Value.Interval;
        var expected = new Dictionary<string, DateTime>();
        foreach (var schedule in schedules)
        {
            var activeFrom = DateTime.SpecifyKind(schedule.ActiveFrom, DateTimeKind.Utc);
            var from = activeFrom > now - rule.Within ? activeFrom : now - rule.Within;
            if (from >= now - grace) continue;
            try
            {
                var fire = ScheduleSpec.FromJson(schedule.SpecJson).Fires(from, now - grace).LastOrDefault();
                if (fire != default) expected[schedule.Id] = fire;
            }
            catch (Exception ex) when (ex is System.Text.Json.JsonException or Cronos.CronFormatException or TimeZoneNotFoundException)
            {
                LogBadSchedule(schedule.Id, ex.Message); // validated on save: only a row written by an older version gets here
            }
        }
        var expectedIds = expected.Select(e => ScheduleIds.Occurrence(e.Key, e.Value)).ToList();
        var claimed = expectedIds.Count == 0 ? [] : (await db.Set<OccurrenceRecord>().AsNoTracking()
            .Where(o => expectedIds.Contains(o.Id)).Select(o => o.Id).ToListAsync(cancellationToken)).ToHashSet(StringComparer.Ordinal);

        var outcomes = new List<(ScheduleRecord Schedule, OccurrenceRecord? Occurrence, DateTime Scheduled, DateTime DecidedAt, string State, string Reason)>();
        foreach (var schedule in schedules)
        {
            var last = newest.GetValueOrDefault(schedule.Id);
            if (expected.TryGetValue(schedule.Id, out var fire) && !claimed.Contains(ScheduleIds.Occurrence(schedule.Id, fire))
                && (last is null || last.ScheduledUtc < fire))
            {
                outcomes.Add((schedule, null, fire, fire, "unclaimed",
                    $"no coordinator claimed the fire time {fire:yyyy-MM-dd HH:mm} UTC (is a scheduler running? Fleet:Schedules:RunScheduler)"));
                continue;
            }
            if (last is null) continue;
            var steps = System.Text.Json.JsonSerializer.Deserialize<List<StepState>>(last.StepsJson) ?? [];
            if (last.State == OccurrenceState.Succeeded && steps.All(s => s.State == StepState.Succeeded)) continue;
            var problems = steps.Where(s => s.State != StepState.Succeeded)
                .Select(s => $"step {s.Index + 1} ({s.Task}) {s.State}{(s.Reason.Length > 0 ? ": " + s.Reason : "")}").Take(3).ToList();
            var reason = last.State is OccurrenceState.Missed or OccurrenceState.Skipped || problems.Count == 0
                ? last.Reason : $"{last.Reason}; {string.Join("; ", problems)}";
            outcomes.Add((schedule, last, last.ScheduledUtc, last.ClosedAt ?? last.ScheduledUtc, last.State.ToString().ToLowerInvariant(), reason));
        }

        // Failed occurrences: the hosts whose step invocations did not succeed.
        var runIds = outcomes.Where(o => o.Occurrence?.State == OccurrenceState.Failed)
            .SelectMany(o => (System.Text.Json.JsonSerializer.Deserialize<List<StepState>>(o.Occurrence!.StepsJson) ?? [])
                .Where(s => s.RunId is not null && s.State is StepState.Failed or StepState.Interrupted).Select(s => s.RunId!))
            .Distinct().ToList();
        var succeeded = InvocationState.Succeeded;
        var failedHosts = runIds.Count == 0 ? [] : await db.Invocations.AsNoTracking()
            .Where(i => runIds.Contains(i.RunId) && i.State != succeeded)
            .Select(i => new { i.RunId, i.AgentId, i.Hostname, i.State, i.Error }).ToListAsync(cancellationToken);

        var signals = new List<AlertSignal>();
        foreach (var (schedule, occurrence, scheduled, decidedAt, state, reason) in outcomes)
        {
            var condition = now - decidedAt <= rule.Within ? Condition.Active : Condition.Hold;
            var value = new DateTimeOffset(DateTime.SpecifyKind(scheduled, DateTimeKind.Utc)).ToUnixTimeSeconds();
            Dictionary<string, string> Annotations(string why) => new()
            {
                ["schedule_name"] = schedule.Name,
                ["occurrence"] = occurrence?.Id ?? "",
                ["scheduled"] = scheduled.ToString("O", CultureInfo.InvariantCulture),
                ["state"] = state,
                ["reason"] = why.Length > 500 ? why[..500] : why,
            };
            var labels = BaseLabels(rule);
            labels["schedule"] = schedule.Id;
            var runs = occurrence is null ? [] : (System.Text.Json.JsonSerializer.Deserialize<List<StepState>>(occurrence.StepsJson) ?? [])
                .Where(s => s.RunId is not null).ToDictionary(s => s.RunId!, s => s);
            var hosts = occurrence?.State == OccurrenceState.Failed
                ? failedHosts.Where(i => runs.ContainsKey(i.RunId)).GroupBy(i => i.AgentId).ToList() : [];
            if (hosts.Count == 0)
            {
                signals.Add(new AlertSignal(labels, condition, value, Annotations(reason)));
                continue;
            }
            foreach (var host in hosts)
            {
                var first = host.OrderBy(i => runs[i.RunId].Index).First();
                hostnames[first.AgentId] = first.Hostname;
                var perHost = new Dictionary<string, string>(labels) { ["agent_id"] = first.AgentId, ["host"] = first.Hostname };
                var step = runs[first.RunId];
                signals.Add(new AlertSignal(perHost, condition, value, Annotations(
                    $"step {step.Index + 1} ({step.Task}) {first.State.ToString().ToLowerInvariant()} on {first.Hostname}{(first.Error.Length > 0 ? ": " + first.Error : "")}")));
            }
        }
        return signals;
    }

    /// <summary>
    /// checklist_missed: one alert per item missed in the last finished period of its kind; a sign-off (or, for an
    /// automatic item, nothing: it stays missed) or the next period's end resolves it. Only periods that started after
    /// the rule was saved count, so a fresh install or a new rule does not page for periods nobody was watching.
    /// </summary>
    async Task<List<AlertSignal>> ChecklistMissedSignalsAsync(CompiledRule rule, CancellationToken cancellationToken)
    {
        var signals = new List<AlertSignal>();
        var watchedFrom = rule.Definition.UpdatedAt?.ToDateTime() ?? DateTime.MinValue;
        foreach (var missed in await checklists.MissedAsync(cancellationToken))
        {
            var kind = missed.Period.Kind.ToString().ToLowerInvariant();
            if (rule.Scope != "*" && rule.Scope != kind) continue;
            if (missed.Period.Start < watchedFrom) continue;
            var labels = BaseLabels(rule);
            labels["checklist"] = kind;
            labels["item"] = missed.Item.Id;
            labels["period"] = missed.Period.Text;
            signals.Add(new AlertSignal(labels, Condition.Active, 1, new Dictionary<string, string>
            {
                ["title"] = missed.Item.Title,
                ["period_start"] = missed.Period.Start.ToString("O", CultureInfo.InvariantCulture),
                ["period_end"] = missed.Period.End.ToString("O", CultureInfo.InvariantCulture),
                ["reason"] = missed.Item.Automatic
                    ? $"no successful run of {string.Join(" or ", missed.Item.Tasks)} finished in {missed.Period.Text}"
                    : $"not signed off for {missed.Period.Text}",
            }));
        }
        return signals;
    }

    /// <summary>
    /// tls_expiry: the newest <c>tls</c> probe result per host and probe within <c>within</c> (1d); days left now are its
    /// <c>tls.days_left</c> less the time since. One alert per (host, target), the soonest certificate. A result without
    /// the value (the handshake failed before a certificate) keeps the alert's state; the probe rule reports that failure.
    /// </summary>
    async Task<List<AlertSignal>> TlsExpirySignalsAsync(CompiledRule rule, DateTime now, CancellationToken cancellationToken)
    {
        var since = now - rule.Within;
        var probe = rule.Metric;
        await using var db = dbFactory.CreateDbContext();
        var results = db.Set<ProbeResultRecord>().Where(p => p.Kind == TlsProbeKind && p.Time >= since && (probe == "*" || p.Name == probe));
        var latest = results.GroupBy(p => new { p.AgentId, p.Name }).Select(g => new { g.Key.AgentId, g.Key.Name, Time = g.Max(p => p.Time) });
        var rows = await (from p in results.AsNoTracking()
                          join l in latest on new { p.AgentId, p.Name, p.Time } equals new { l.AgentId, l.Name, l.Time }
                          select new { p.AgentId, p.Name, p.Target, p.ValuesJson, p.Time }).ToListAsync(cancellationToken);
        var signals = new List<AlertSignal>();
        foreach (var group in rows.GroupBy(r => (r.AgentId, r.Target)))
        {
            var labels = await LabelsAsync(rule, group.Key.AgentId, [new("target", group.Key.Target)], cancellationToken);
            var known = group.Select(r => (Row: r, Days: DaysLeft(r.ValuesJson) is { } d ? d - (now - r.Time).TotalDays : (double?)null))
                .Where(x => x.Days is not null).ToList();
            if (known.Count == 0)
            {
                signals.Add(new AlertSignal(labels, Condition.Hold, 0));
                continue;
            }
            var (row, days) = known.MinBy(x => x.Days!.Value);
            var notAfter = row.Time.AddDays(DaysLeft(row.ValuesJson)!.Value);
            signals.Add(new AlertSignal(labels, days < rule.Days ? Condition.Active : Condition.Inactive, Math.Round(days!.Value, 1),
                new Dictionary<string, string>
                {
                    ["probe"] = row.Name,
                    ["not_after"] = notAfter.ToString("O", CultureInfo.InvariantCulture),
                    ["days_left"] = days.Value.ToString("0.#", CultureInfo.InvariantCulture),
                }));
        }
        return signals;
    }

    static double? DaysLeft(string valuesJson)
    {
        try
        {
            return System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, double>>(valuesJson)?.TryGetValue(TlsDaysLeft, out var v) == true && double.IsFinite(v) ? v : null;
        }
        catch (System.Text.Json.JsonException) { return null; }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Schedule {ScheduleId} cannot be read for window_missed rules: {Problem}")]
    partial void LogBadSchedule(string scheduleId, string problem);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Alert evaluation queue full; a batch from agent {AgentId} is evaluated on its next sample")]
    partial void LogQueueFull(string agentId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Alert timer evaluation failed; retrying on the next tick")]
    partial void LogTickFailed(Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rule {Rule} read its cap of {Rows} log rows: counts may be low, and no alert of it is resolved this pass")]
    partial void LogRowCapReached(string rule, int rows);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Alert evaluation of ingested batches failed")]
    partial void LogIngestEvaluationFailed(Exception exception);
}
