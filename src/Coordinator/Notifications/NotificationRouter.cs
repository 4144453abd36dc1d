using System.Text.Json;
using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Schedules;
using Fleet.Coordinator.Storage;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Notifications;

/// <summary>What a sender renders: the transition, copied when it was routed.</summary>
public sealed record NotificationPayload(
    long TransitionId, string Alert, string State, string Severity, IReadOnlyDictionary<string, string> Labels,
    IReadOnlyDictionary<string, string> Annotations, double Value, DateTime Time, string Fingerprint, long Episode, int Sequence = 0,
    DateTime? FiringSince = null)
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public string Host => Labels.TryGetValue("host", out var h) ? h : Labels.TryGetValue("agent", out var a) ? a : "";
    public string Annotation(string name) => Annotations.TryGetValue(name, out var v) ? v : "";
}

/// <summary>
/// Routes committed alert transitions to receivers. Woken by <see cref="AlertTransitions"/> (and a slow poll), it takes
/// firing/resolved rows not yet routed and, per row in ONE transaction, marks it routed (a conditional update, so a second
/// replica finds nothing to do) and inserts one <see cref="NotificationRecord"/> per matching receiver; then it hands
/// them to the delivery (after the group wait). Pending and acknowledged transitions are marked routed without notifications.
/// A silence, an open maintenance window of the host or an inhibition (the host is offline) writes the row as silenced or
/// inhibited instead; a resolved transition goes only to receivers that were told it fired.
/// On every poll it also notifies again what is still firing: repeats after <see cref="NotificationsOptions.RepeatInterval"/>
/// and alerts whose silence, window or inhibition ended (a new row with the next <see cref="NotificationRecord.Sequence"/>,
/// unique per transition and receiver, so replicas cannot both add it).
/// </summary>
public sealed partial class NotificationRouter(
    IDbContextFactory<FleetDbContext> dbFactory, AlertTransitions transitions, SilenceStore silences, IOpenWindows windows, IBus bus,
    NotificationDelivery delivery, IOptions<NotificationsOptions> options, TimeProvider time, ILogger<NotificationRouter> logger) : BackgroundService
{
    const int BatchSize = 200, MaxRenotify = 2000;
    readonly NotificationsOptions settings = options.Value;
    readonly IReadOnlyList<(RouteOptions Route, IReadOnlyList<SilenceMatcher> Matchers)> routes =
        options.Value.Routes.Select(r => (r, (IReadOnlyList<SilenceMatcher>)r.Matchers.Select(m => SilenceMatcher.Parse(m)).ToList())).ToList();
    readonly List<Inhibition> inhibitions = options.Value.EffectiveInhibit.Select(i => new Inhibition(
        i.Source.Select(m => SilenceMatcher.Parse(m)).ToList(), i.Target.Select(m => SilenceMatcher.Parse(m)).ToList(), i.Equal)).ToList();
    DateTime lastRenotify = DateTime.MinValue;

    sealed record Inhibition(IReadOnlyList<SilenceMatcher> Source, IReadOnlyList<SilenceMatcher> Target, IReadOnlyList<string> Equal);

    /// <summary>What suppresses notifications right now: silences, open windows, firing alerts that may inhibit.</summary>
    sealed record Suppressions(List<SilenceRecord> Silences, IReadOnlyList<OpenWindowInfo> Windows, List<Dictionary<string, string>> Firing);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (settings.Routes.Count == 0)
        {
            // Not configured: leave the transitions unrouted, so routes added later still notify the recent ones (MaxAge).
            LogDisabled();
            return;
        }
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                while (await RouteOnceAsync(stoppingToken) == BatchSize) { }
                if (time.GetUtcNow().UtcDateTime - lastRenotify >= settings.RouterPoll) await RenotifyAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogFailed(ex);
            }
            using var poll = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            poll.CancelAfter(settings.RouterPoll);
            try { await transitions.WaitAsync(poll.Token); }
            catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested) { }
        }
    }

    /// <summary>Routes one batch of unrouted transitions; returns how many it looked at.</summary>
    public async Task<int> RouteOnceAsync(CancellationToken cancellationToken)
    {
        List<AlertTransitionRecord> batch;
        await using (var db = dbFactory.CreateDbContext())
            batch = await db.Set<AlertTransitionRecord>().AsNoTracking().Where(t => t.RoutedAt == null)
                .OrderBy(t => t.Id).Take(BatchSize).ToListAsync(cancellationToken);
        if (batch.Count == 0) return 0;
        Hosting.CrashPoints.Reached(Hosting.CrashPoints.TransitionCommitted);
        var now = time.GetUtcNow().UtcDateTime;
        var suppressions = await SuppressionsAsync(now, cancellationToken);
        var due = new List<NotificationRecord>();
        foreach (var transition in batch)
            due.AddRange(await RouteAsync(transition, suppressions, now, cancellationToken));
        await HandOutAsync(due, now, cancellationToken);
        return batch.Count;
    }

    async Task<Suppressions> SuppressionsAsync(DateTime now, CancellationToken cancellationToken)
    {
        var active = await silences.ActiveAsync(now, cancellationToken);
        var open = settings.SilenceMaintenanceWindows ? await windows.GetAsync(cancellationToken) : [];
        List<Dictionary<string, string>> firing = [];
        if (inhibitions.Count > 0)
        {
            await using var db = dbFactory.CreateDbContext();
            var rows = await db.Set<AlertRecord>().AsNoTracking().Where(a => a.State == AlertStates.Firing)
                .Select(a => new { a.RuleName, a.LabelsJson }).Take(10_000).ToListAsync(cancellationToken);
            firing = rows.Select(r =>
            {
                var labels = AlertLabels.Parse(r.LabelsJson);
                labels.TryAdd("alertname", r.RuleName);
                return labels;
            }).ToList();
        }
        return new Suppressions(active, open, firing);
    }

    /// <summary>Why an alert with these labels is not to be notified now (state silenced or inhibited, and the reason), or null.</summary>
    (string State, string Reason)? Suppressed(Dictionary<string, string> labels, Suppressions s, DateTime at)
    {
        if (SilenceStore.HeldBackBy(labels, s.Silences, s.Windows, at) is { } silenced) return (NotificationStates.Silenced, silenced);
        foreach (var rule in inhibitions)
        {
            if (!rule.Target.All(m => m.Matches(labels)) || rule.Source.All(m => m.Matches(labels))) continue; // an alert never inhibits itself
            var source = s.Firing.FirstOrDefault(f => rule.Source.All(m => m.Matches(f))
                && rule.Equal.All(l => (f.TryGetValue(l, out var a) ? a : "") == (labels.TryGetValue(l, out var b) ? b : "")));
            if (source is not null)
                return (NotificationStates.Inhibited, $"inhibited by {source.GetValueOrDefault("alertname")}"
                    + string.Concat(rule.Equal.Select(l => $" {l}={source.GetValueOrDefault(l)}")));
        }
        return null;
    }

    async Task<List<NotificationRecord>> RouteAsync(AlertTransitionRecord transition, Suppressions suppressions, DateTime now, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        var claimed = await db.Set<AlertTransitionRecord>().Where(t => t.Id == transition.Id && t.RoutedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(t => t.RoutedAt, now), cancellationToken);
        if (claimed == 0) return []; // another replica routed it
        var rows = new List<NotificationRecord>();
        var tooOld = now - transition.Time > settings.MaxAge;
        if (tooOld) LogTooOld(transition.Id, transition.RuleName, transition.Time);
        else if (transition.Kind is AlertTransitionKinds.Firing or AlertTransitionKinds.Resolved)
        {
            var labels = AlertLabels.Parse(transition.LabelsJson);
            labels.TryAdd("alertname", transition.RuleName);
            var receivers = Receivers(labels, transition.Severity, transition.Kind);
            if (transition.Kind == AlertTransitionKinds.Resolved && receivers.Count > 0)
            {
                // Only who heard it fire hears it resolve (not the receivers it was silenced or inhibited for).
                var told = await db.Set<NotificationRecord>().AsNoTracking()
                    .Where(n => NotificationStates.Notified.Contains(n.State) && db.Set<AlertTransitionRecord>().Any(t => t.Id == n.TransitionId
                        && t.RuleId == transition.RuleId && t.Fingerprint == transition.Fingerprint && t.Episode == transition.Episode
                        && t.Kind == AlertTransitionKinds.Firing))
                    .Select(n => n.Receiver).Distinct().ToListAsync(cancellationToken);
                receivers = receivers.Where(told.Contains).ToList();
            }
            var suppressed = receivers.Count == 0 || transition.Kind == AlertTransitionKinds.Resolved ? null : Suppressed(labels, suppressions, now);
            var payload = Payload(transition, labels, 0, null);
            foreach (var receiver in receivers)
                rows.Add(new NotificationRecord
                {
                    TransitionId = transition.Id, Receiver = receiver, PayloadJson = payload, CreatedAt = now, NextAttemptAt = now + settings.GroupWait,
                    GroupKey = GroupKey(labels), State = suppressed?.State ?? NotificationStates.Pending, LastError = suppressed?.Reason,
                });
            if (suppressed is { } why) LogSuppressed(transition.Id, transition.RuleName, why.Reason);
            else if (receivers.Count == 0) LogUnrouted(transition.Id, transition.RuleName);
        }
        db.Set<NotificationRecord>().AddRange(rows);
        await db.SaveChangesAsync(cancellationToken);
        await tx.CommitAsync(cancellationToken);
        return rows.Where(r => r.State == NotificationStates.Pending).ToList();
    }

    string Payload(AlertTransitionRecord transition, Dictionary<string, string> labels, int sequence, DateTime? firingSince) =>
        JsonSerializer.Serialize(new NotificationPayload(transition.Id, transition.RuleName, transition.Kind, transition.Severity,
            labels, AlertLabels.Parse(transition.AnnotationsJson), transition.Value, transition.Time, transition.Fingerprint, transition.Episode,
            sequence, firingSince), NotificationPayload.Json);

    /// <summary>The group of an alert: a short hash of the group-by labels' values.</summary>
    public string GroupKey(IReadOnlyDictionary<string, string> labels)
    {
        var text = string.Join("\u001f", settings.EffectiveGroupBy.Select(l => l + "=" + (labels.TryGetValue(l, out var v) ? v : "")));
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)))[..32];
    }

    /// <summary>Sends the nudges now, or wakes the sweeper for when the group wait is over.</summary>
    async Task HandOutAsync(List<NotificationRecord> rows, DateTime now, CancellationToken cancellationToken)
    {
        foreach (var row in rows.Where(r => r.NextAttemptAt <= now))
            await NotificationDue.SendAsync(bus, settings.Queue, row.Id, cancellationToken);
        if (rows.Any(r => r.NextAttemptAt > now)) delivery.WakeSweeper();
    }

    /// <summary>
    /// Notifies again what still fires: a repeat after <see cref="NotificationsOptions.RepeatInterval"/> (not once acknowledged),
    /// and the firing an operator never heard of because a silence, window or inhibition held it back that has now ended.
    /// </summary>
    public async Task<int> RenotifyAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        lastRenotify = now;
        await using var db = dbFactory.CreateDbContext();
        var firing = await (from a in db.Set<AlertRecord>().AsNoTracking()
                            where a.State == AlertStates.Firing
                            join t in db.Set<AlertTransitionRecord>().AsNoTracking()
                                on new { a.RuleId, a.Fingerprint, a.Episode } equals new { t.RuleId, t.Fingerprint, t.Episode }
                            where t.Kind == AlertTransitionKinds.Firing && t.RoutedAt != null
                            orderby a.Id
                            select new { Alert = a, Transition = t }).Take(MaxRenotify).ToListAsync(cancellationToken);
        if (firing.Count == 0) return 0;
        var ids = firing.Select(f => f.Transition.Id).ToList();
        var latest = (await db.Set<NotificationRecord>().AsNoTracking().Where(n => ids.Contains(n.TransitionId))
                .Select(n => new { n.TransitionId, n.Receiver, n.Sequence, n.State, n.CreatedAt }).ToListAsync(cancellationToken))
            .GroupBy(n => (n.TransitionId, n.Receiver)).ToDictionary(g => g.Key, g => g.MaxBy(n => n.Sequence)!);
        if (latest.Count == 0) return 0;
        var suppressions = await SuppressionsAsync(now, cancellationToken);
        var added = new List<NotificationRecord>();
        foreach (var f in firing)
        {
            var labels = AlertLabels.Parse(f.Transition.LabelsJson);
            labels.TryAdd("alertname", f.Transition.RuleName);
            foreach (var receiver in Receivers(labels, f.Transition.Severity, AlertTransitionKinds.Firing))
            {
                if (!latest.TryGetValue((f.Transition.Id, receiver), out var last)) continue; // routed before this route existed
                var heldBack = last.State is NotificationStates.Silenced or NotificationStates.Inhibited;
                var repeatDue = last.State is NotificationStates.Sent or NotificationStates.Dead && settings.RepeatInterval > TimeSpan.Zero
                    && f.Alert.AcknowledgedAt is null && now - last.CreatedAt >= settings.RepeatInterval;
                if (!heldBack && !repeatDue) continue;
                if (Suppressed(labels, suppressions, now) is not null) continue;
                var row = new NotificationRecord
                {
                    TransitionId = f.Transition.Id, Receiver = receiver, Sequence = last.Sequence + 1, State = NotificationStates.Pending,
                    PayloadJson = Payload(f.Transition, labels, last.Sequence + 1, f.Alert.FiringSince), CreatedAt = now, NextAttemptAt = now,
                    GroupKey = GroupKey(labels),
                };
                await using var insert = dbFactory.CreateDbContext();
                insert.Set<NotificationRecord>().Add(row);
                try
                {
                    await insert.SaveChangesAsync(cancellationToken);
                    added.Add(row);
                    LogRenotify(f.Transition.Id, f.Transition.RuleName, receiver, heldBack ? "its silence, window or inhibition ended" : "repeat interval");
                }
                catch (DbUpdateException)
                {
                    // Another replica added this sequence number first (unique per transition, receiver, sequence).
                }
            }
        }
        await HandOutAsync(added, now, cancellationToken);
        return added.Count;
    }

    /// <summary>The receivers every matching route names (each once), minus those that do not want resolved follow-ups.</summary>
    public List<string> Receivers(IReadOnlyDictionary<string, string> labels, string severity, string kind) =>
        routes.Where(r => (r.Route.Severities.Count == 0 || r.Route.Severities.Contains(severity)) && r.Matchers.All(m => m.Matches(labels)))
            .SelectMany(r => r.Route.Receivers).Distinct(StringComparer.Ordinal)
            .Where(name => kind != AlertTransitionKinds.Resolved || settings.Receivers[name].SendResolved)
            .ToList();

    [LoggerMessage(Level = LogLevel.Information, Message = "Fleet:Notifications has no routes: alert transitions are not notified")]
    partial void LogDisabled();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Alert transition {Transition} ({Rule}) of {Time} is older than Fleet:Notifications:MaxAge: not notified")]
    partial void LogTooOld(long transition, string rule, DateTime time);

    [LoggerMessage(Level = LogLevel.Error, Message = "Routing alert transitions failed; retrying on the next wake-up")]
    partial void LogFailed(Exception ex);

    [LoggerMessage(Level = LogLevel.Information, Message = "Alert transition {Transition} ({Rule}) is not notified: {Reason}")]
    partial void LogSuppressed(long transition, string rule, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Alert transition {Transition} ({Rule}) matches no route")]
    partial void LogUnrouted(long transition, string rule);

    [LoggerMessage(Level = LogLevel.Information, Message = "Alert transition {Transition} ({Rule}) is notified to {Receiver} again: {Why}")]
    partial void LogRenotify(long transition, string rule, string receiver, string why);
}
