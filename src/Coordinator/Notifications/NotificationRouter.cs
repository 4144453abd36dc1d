using System.Text.Json;
using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Storage;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Notifications;

/// <summary>What a sender renders: the transition, copied when it was routed.</summary>
public sealed record NotificationPayload(
    long TransitionId, string Alert, string State, string Severity, IReadOnlyDictionary<string, string> Labels,
    IReadOnlyDictionary<string, string> Annotations, double Value, DateTime Time, string Fingerprint, long Episode)
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public string Host => Labels.TryGetValue("host", out var h) ? h : Labels.TryGetValue("agent", out var a) ? a : "";
    public string Annotation(string name) => Annotations.TryGetValue(name, out var v) ? v : "";
}

/// <summary>
/// Routes committed alert transitions to receivers. Woken by <see cref="AlertTransitions"/> (and a slow poll), it takes
/// firing/resolved rows not yet routed and, per row in ONE transaction, marks it routed (a conditional update, so a second
/// replica finds nothing to do) and inserts one <see cref="NotificationRecord"/> per matching receiver; then it sends
/// <see cref="NotificationDue"/> for each. Pending and acknowledged transitions are marked routed without notifications.
/// </summary>
public sealed partial class NotificationRouter(
    IDbContextFactory<FleetDbContext> dbFactory, AlertTransitions transitions, SilenceStore silences, IBus bus,
    IOptions<NotificationsOptions> options, TimeProvider time, ILogger<NotificationRouter> logger) : BackgroundService
{
    const int BatchSize = 200;
    readonly NotificationsOptions settings = options.Value;
    readonly IReadOnlyList<(RouteOptions Route, IReadOnlyList<SilenceMatcher> Matchers)> routes =
        options.Value.Routes.Select(r => (r, (IReadOnlyList<SilenceMatcher>)r.Matchers.Select(m => SilenceMatcher.Parse(m)).ToList())).ToList();

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
        var now = time.GetUtcNow().UtcDateTime;
        var active = await silences.ActiveAsync(now, cancellationToken);
        var due = new List<long>();
        foreach (var transition in batch)
            due.AddRange(await RouteAsync(transition, active, now, cancellationToken));
        foreach (var id in due)
            await NotificationDue.SendAsync(bus, settings.Queue, id, cancellationToken);
        return batch.Count;
    }

    async Task<List<long>> RouteAsync(AlertTransitionRecord transition, List<SilenceRecord> active, DateTime now, CancellationToken cancellationToken)
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
            var silence = receivers.Count == 0 ? null : active.FirstOrDefault(s => SilenceStore.Matches(s, labels, transition.Time));
            var payload = JsonSerializer.Serialize(new NotificationPayload(transition.Id, transition.RuleName, transition.Kind, transition.Severity,
                labels, AlertLabels.Parse(transition.AnnotationsJson), transition.Value, transition.Time, transition.Fingerprint, transition.Episode),
                NotificationPayload.Json);
            foreach (var receiver in receivers)
                rows.Add(new NotificationRecord
                {
                    TransitionId = transition.Id, Receiver = receiver, PayloadJson = payload, CreatedAt = now, NextAttemptAt = now,
                    State = silence is null ? NotificationStates.Pending : NotificationStates.Silenced,
                    LastError = silence is null ? null : $"silenced by {silence.Id} until {silence.EndsAt:O} ({silence.Comment})",
                });
            if (silence is not null) LogSilenced(transition.Id, transition.RuleName, silence.Id);
            else if (receivers.Count == 0) LogUnrouted(transition.Id, transition.RuleName);
        }
        db.Set<NotificationRecord>().AddRange(rows);
        await db.SaveChangesAsync(cancellationToken);
        await tx.CommitAsync(cancellationToken);
        return rows.Where(r => r.State == NotificationStates.Pending).Select(r => r.Id).ToList();
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Alert transition {Transition} ({Rule}) is silenced by {Silence}: not notified")]
    partial void LogSilenced(long transition, string rule, string silence);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Alert transition {Transition} ({Rule}) matches no route")]
    partial void LogUnrouted(long transition, string rule);
}
