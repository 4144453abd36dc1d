using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Fleet.Coordinator.Metrics;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Alerts;

/// <summary>What one evaluation found for one label set of a rule.</summary>
public sealed record AlertSignal(IReadOnlyDictionary<string, string> Labels, Condition Condition, double Value,
    IReadOnlyDictionary<string, string>? Annotations = null)
{
    public string Fingerprint { get; } = AlertLabels.Fingerprint(Labels);
}

public static class AlertLabels
{
    /// <summary>A stable hash of the sorted labels (16 hex characters of SHA-256 over their canonical text).</summary>
    public static string Fingerprint(IEnumerable<KeyValuePair<string, string>> labels) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(MetricLabels.Canonical(labels))))[..16];

    public static string Json(IReadOnlyDictionary<string, string> values) =>
        JsonSerializer.Serialize(new SortedDictionary<string, string>(values.ToDictionary(), StringComparer.Ordinal));

    public static Dictionary<string, string> Parse(string json) =>
        JsonSerializer.Deserialize<Dictionary<string, string>>(json) ?? [];
}

/// <summary>
/// The in-process signal that alert transitions were committed: the notification fan-out waits on it instead of
/// polling <c>alert_transitions</c> (it still reads the table, which is the outbox: a missed wake-up only delays).
/// Other readers of the table (remediation) take their own <see cref="Listen"/>er, so nobody steals another's wake-up.
/// </summary>
public sealed class AlertTransitions
{
    readonly Channel<bool> wake = NewChannel();
    readonly List<Channel<bool>> listeners = [];
    long committed;

    /// <summary>Transition rows this process has committed since it started.</summary>
    public long Committed => Interlocked.Read(ref committed);

    public void Wake(int count = 1)
    {
        Interlocked.Add(ref committed, count);
        wake.Writer.TryWrite(true);
        lock (listeners)
            foreach (var listener in listeners) listener.Writer.TryWrite(true);
    }

    /// <summary>Completes when transitions were committed since the previous wait returned (one waiter: the notification router).</summary>
    public async Task WaitAsync(CancellationToken cancellationToken) => await wake.Reader.ReadAsync(cancellationToken);

    /// <summary>A wake-up of its own for another reader of the table: the returned wait completes once per burst of commits.</summary>
    public Func<CancellationToken, Task> Listen()
    {
        var channel = NewChannel();
        lock (listeners) listeners.Add(channel);
        return async cancellationToken => await channel.Reader.ReadAsync(cancellationToken);
    }

    static Channel<bool> NewChannel() => Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
}

/// <summary>
/// The alert state machine, applied in the database: pending -> firing (after <c>for</c>) -> resolved, each change
/// written with its <see cref="AlertTransitionRecord"/> in one transaction. Two replicas deciding from the same state
/// collide on the alert row's version or on the transition's unique index; the loser re-reads and finds nothing to do.
/// </summary>
public sealed partial class AlertStore(IDbContextFactory<FleetDbContext> dbFactory, AlertTransitions transitions, ILogger<AlertStore> logger)
{
    const int Attempts = 5;
    readonly ConcurrentDictionary<(long RuleId, string Fingerprint), (string State, DateTime? ActiveSince)> known = new();
    // When this process last decided each alert (a counter, under `gate`): a refresh keeps what was decided after its read.
    readonly Dictionary<(long RuleId, string Fingerprint), long> decidedAt = [];
    readonly Lock gate = new();
    long decisions;

    /// <summary>The state a decision would go to from (state, condition), and the transition it writes (null: none).</summary>
    public static (string State, string? Transition, bool NewEpisode) Decide(string state, Condition condition, DateTime? activeSince, TimeSpan forDuration, DateTime now) =>
        state switch
        {
            AlertStates.Pending when condition == Condition.Inactive => (AlertStates.Inactive, null, false),
            AlertStates.Pending when now - (activeSince ?? now) >= forDuration => (AlertStates.Firing, AlertTransitionKinds.Firing, false),
            AlertStates.Pending => (state, null, false),
            AlertStates.Firing when condition == Condition.Inactive => (AlertStates.Resolved, AlertTransitionKinds.Resolved, false),
            AlertStates.Firing => (state, null, false),
            _ when condition == Condition.Active && forDuration <= TimeSpan.Zero => (AlertStates.Firing, AlertTransitionKinds.Firing, true),
            _ when condition == Condition.Active => (AlertStates.Pending, AlertTransitionKinds.Pending, true),
            _ => (state, null, false),
        };

    /// <summary>True when this process last saw a state from which the signal changes something (a hint; the database decides).</summary>
    public bool MayChange(CompiledRule rule, AlertSignal signal, DateTime now)
    {
        var (state, since) = known.TryGetValue((rule.Id, signal.Fingerprint), out var k) ? k : (AlertStates.Inactive, null);
        return Decide(state, signal.Condition, since, rule.PendingFor, now).State != state;
    }

    /// <summary>Forgets what this process believed, then learns the open alerts from the database (other replicas change them too).</summary>
    /// <remarks>
    /// An evaluation may commit while the read runs: what this process decided after the read started is newer than the
    /// snapshot and stays (a stale "firing" would hide the next firing until the following refresh).
    /// </remarks>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        long started;
        lock (gate) started = decisions;
        await using var db = dbFactory.CreateDbContext();
        var open = await db.Set<AlertRecord>().AsNoTracking()
            .Where(a => a.State == AlertStates.Pending || a.State == AlertStates.Firing)
            .Select(a => new { a.RuleId, a.Fingerprint, a.State, a.ActiveSince }).ToListAsync(cancellationToken);
        lock (gate)
        {
            var newer = decidedAt.Where(d => d.Value > started).Select(d => d.Key).ToHashSet();
            foreach (var key in known.Keys)
                if (!newer.Contains(key)) known.TryRemove(key, out _);
            foreach (var a in open)
                if (!newer.Contains((a.RuleId, a.Fingerprint))) known[(a.RuleId, a.Fingerprint)] = (a.State, a.ActiveSince);
            foreach (var key in decidedAt.Keys.Where(k => !newer.Contains(k)).ToList()) decidedAt.Remove(key);
        }
    }

    /// <summary>
    /// Applies the signals of one rule. <paramref name="complete"/>: the signals are everything the rule sees now, so its
    /// open alerts without a signal are inactive (resolve). Returns the transitions written.
    /// </summary>
    public async Task<int> ApplyAsync(CompiledRule rule, IReadOnlyList<AlertSignal> signals, bool complete, DateTime now, CancellationToken cancellationToken)
    {
        var bySignal = signals.GroupBy(s => s.Fingerprint).ToDictionary(g => g.Key, g => g.Last());
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var (written, states) = await ApplyOnceAsync(rule, bySignal, complete, now, cancellationToken);
                lock (gate)
                {
                    var stamp = ++decisions;
                    foreach (var (fp, state) in states)
                    {
                        decidedAt[(rule.Id, fp)] = stamp;
                        if (state.State is AlertStates.Pending or AlertStates.Firing) known[(rule.Id, fp)] = state;
                        else known.TryRemove((rule.Id, fp), out _);
                    }
                }
                if (written > 0)
                {
                    transitions.Wake(written);
                    LogTransitions(rule.Name, written);
                }
                return written;
            }
            catch (DbUpdateException ex) when (attempt < Attempts)
            {
                // Another replica (or evaluation) changed these alerts first: decide again from what it committed.
                LogConflict(rule.Name, attempt, ex.InnerException?.Message ?? ex.Message);
            }
        }
    }

    async Task<(int Written, Dictionary<string, (string State, DateTime? ActiveSince)> States)> ApplyOnceAsync(
        CompiledRule rule, Dictionary<string, AlertSignal> signals, bool complete, DateTime now, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        var fingerprints = signals.Keys.ToList();
        var query = db.Set<AlertRecord>().Where(a => a.RuleId == rule.Id);
        query = complete
            ? query.Where(a => fingerprints.Contains(a.Fingerprint) || a.State == AlertStates.Pending || a.State == AlertStates.Firing)
            : query.Where(a => fingerprints.Contains(a.Fingerprint));
        var rows = (await query.ToListAsync(cancellationToken)).ToDictionary(a => a.Fingerprint);
        var states = new Dictionary<string, (string, DateTime?)>();
        var written = 0;

        var work = signals.Values.Select(s => (s.Fingerprint, Signal: (AlertSignal?)s)).ToList();
        if (complete)
            work.AddRange(rows.Values.Where(r => !signals.ContainsKey(r.Fingerprint)).Select(r => (r.Fingerprint, Signal: (AlertSignal?)null)));

        foreach (var (fp, signal) in work)
        {
            rows.TryGetValue(fp, out var row);
            var state = row?.State ?? AlertStates.Inactive;
            var condition = signal?.Condition ?? Condition.Inactive;
            var (next, kind, newEpisode) = Decide(state, condition, row?.ActiveSince, rule.PendingFor, now);
            states[fp] = (next, next == AlertStates.Pending ? (newEpisode ? now : row?.ActiveSince) : next == AlertStates.Firing ? row?.ActiveSince ?? now : null);
            if (next == state) continue;
            if (row is null)
            {
                row = new AlertRecord { RuleId = rule.Id, RuleName = rule.Name, Fingerprint = fp, State = next, Severity = rule.Severity };
                db.Set<AlertRecord>().Add(row);
            }
            row.State = next;
            row.RuleName = rule.Name;
            row.Severity = rule.Severity;
            row.UpdatedAt = now;
            row.Version++;
            if (newEpisode)
            {
                row.Episode++;
                row.ActiveSince = now;
                row.FiringSince = null;
                row.ResolvedAt = null;
                row.AcknowledgedAt = null;
                row.AcknowledgedBy = null;
                row.AckComment = null;
            }
            if (signal is not null)
            {
                row.Value = signal.Value;
                row.LabelsJson = AlertLabels.Json(signal.Labels);
                row.AnnotationsJson = AlertLabels.Json(Annotations(rule, signal));
            }
            if (next == AlertStates.Firing) row.FiringSince = now;
            if (next == AlertStates.Resolved) row.ResolvedAt = now;
            if (next == AlertStates.Inactive) row.ActiveSince = null;
            states[fp] = (next, row.ActiveSince);
            if (kind is null) continue;
            db.Set<AlertTransitionRecord>().Add(new AlertTransitionRecord
            {
                RuleId = rule.Id, RuleName = rule.Name, Fingerprint = fp, Episode = row.Episode, Kind = kind,
                LabelsJson = row.LabelsJson, AnnotationsJson = row.AnnotationsJson, Severity = rule.Severity, Value = row.Value, Time = now,
            });
            written++;
        }
        if (db.ChangeTracker.HasChanges())
        {
            await db.SaveChangesAsync(cancellationToken);
            await tx.CommitAsync(cancellationToken);
        }
        return (written, states);
    }

    /// <summary>summary (rendered), runbook, value, threshold and the rule kind's extras.</summary>
    public static Dictionary<string, string> Annotations(CompiledRule rule, AlertSignal signal)
    {
        var value = signal.Value.ToString("0.####", CultureInfo.InvariantCulture);
        var threshold = rule.Kind switch
        {
            RuleKinds.Threshold or RuleKinds.Predict => rule.Threshold.ToString("0.####", CultureInfo.InvariantCulture),
            RuleKinds.Probe => (rule.Definition.Failures > 0 ? rule.Definition.Failures : 3).ToString(CultureInfo.InvariantCulture),
            RuleKinds.LogRate => rule.Definition.MoreThan.ToString(CultureInfo.InvariantCulture),
            RuleKinds.Offline => Protocol.Durations.Format(rule.For),
            RuleKinds.TlsExpiry => rule.Days.ToString(CultureInfo.InvariantCulture),
            _ => "",
        };
        var fallback = rule.Name + (signal.Labels.ContainsKey("host") ? " on {{host}}" : signal.Labels.ContainsKey("schedule") ? " for {{schedule}}" : signal.Labels.ContainsKey("item") ? " for {{item}} ({{period}})" : "");
        var result = new Dictionary<string, string>
        {
            ["summary"] = Render(rule.Definition.Summary.Length > 0 ? rule.Definition.Summary : fallback, signal.Labels, value, threshold, signal.Annotations),
            ["runbook"] = rule.Definition.Runbook,
            ["value"] = value,
            ["threshold"] = threshold,
        };
        if (signal.Annotations is not null)
            foreach (var (k, v) in signal.Annotations) result[k] = v;
        return result;
    }

    /// <summary>Fills in {{label}}, {{value}}, {{threshold}} and the kind's own annotations ({{reason}}, {{not_after}}, ...).</summary>
    static string Render(string template, IReadOnlyDictionary<string, string> labels, string value, string threshold, IReadOnlyDictionary<string, string>? annotations)
    {
        var sb = new StringBuilder(template);
        foreach (var (k, v) in labels) sb.Replace("{{" + k + "}}", v);
        if (annotations is not null)
            foreach (var (k, v) in annotations) sb.Replace("{{" + k + "}}", v);
        sb.Replace("{{value}}", value).Replace("{{threshold}}", threshold);
        return sb.ToString();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Alert rule {Rule}: {Count} transitions")]
    partial void LogTransitions(string rule, int count);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Alert rule {Rule}: attempt {Attempt} lost a race ({Problem}); deciding again")]
    partial void LogConflict(string rule, int attempt, string problem);
}
