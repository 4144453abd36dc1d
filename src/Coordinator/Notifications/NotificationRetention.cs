using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Notifications;

/// <summary>
/// Deletes old notification rows so the outbox (and the receivers API's counts over it) stays bounded. A row goes when
/// ALL of these hold:
/// <list type="bullet">
/// <item>its state is final: sent, dead, silenced or inhibited (never pending or sending: a claimed row, a due retry or
/// one in its group wait or rate-limit wait);</item>
/// <item>it was written more than <see cref="NotificationsOptions.Retention"/> ago;</item>
/// <item>its alert episode is over: the alert's row is no longer pending or firing in that episode (resolved, a newer
/// episode, or the alert is gone), and no transition of that episode is still unrouted.</item>
/// </list>
/// The last condition is what keeps pruning from changing what is notified. While an episode is open the router reads its
/// rows: the newest <see cref="NotificationRecord.Sequence"/> per receiver decides whether a repeat or a late firing is
/// due (and the next sequence number, whose unique index stops replicas sending it twice), and a silenced or inhibited
/// row is what a late firing follows up. When it resolves, the router sends the resolved message to the receivers whose
/// firing rows are pending, sending or sent. Deleting any of those rows early could send a repeat twice, a late firing
/// nobody needs, or lose the resolved message; once the episode is over and its resolved transition routed, nothing reads
/// them again. So rows of an alert that has been firing for longer than the retention are kept until it resolves.
/// Each statement deletes at most <see cref="BatchSize"/> rows (short transactions, no long locks); several replicas
/// may run it at once (each statement re-checks the conditions; a row deleted by another replica is simply not counted).
/// <para>
/// The same pass deletes receiver send gates (<see cref="ReceiverGateRecord"/>) whose slot freed more than
/// <see cref="GateIdle"/> ago: a missing gate means "free now", exactly what such a gate says, so only the rows of
/// receivers that were renamed or removed (or are idle) go, and the table stays as small as the receiver list. A gate
/// in use is never that old: a send takes it (now + interval) before it starts.
/// </para>
/// </summary>
public sealed partial class NotificationRetention(
    IDbContextFactory<FleetDbContext> dbFactory, IOptions<NotificationsOptions> options, TimeProvider time, ILogger<NotificationRetention> logger) : BackgroundService
{
    /// <summary>Rows one delete statement removes at most.</summary>
    public const int BatchSize = 5_000;

    /// <summary>The states a notification never leaves (the router writes a new row to notify again).</summary>
    public static readonly string[] FinalStates = [NotificationStates.Sent, NotificationStates.Dead, NotificationStates.Silenced, NotificationStates.Inhibited];

    static readonly string[] OpenAlertStates = [AlertStates.Pending, AlertStates.Firing];

    /// <summary>How long after its slot freed a receiver's send gate is deleted.</summary>
    public static readonly TimeSpan GateIdle = TimeSpan.FromDays(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.RetentionInterval, time);
        do
        {
            try { await RunOnceAsync(stoppingToken); }
            catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                // A database outage (or a bug) costs this pass, never the coordinator.
                LogFailed(ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>One pass, in batches until nothing is left to delete; returns the number of rows this call deleted.</summary>
    public async Task<long> RunOnceAsync(CancellationToken cancellationToken)
    {
        var before = time.GetUtcNow().UtcDateTime - options.Value.Retention;
        long total = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            var deleted = await DeleteBatchAsync(before, cancellationToken);
            total += deleted;
            if (deleted < BatchSize) break;
        }
        if (total > 0) LogDeleted(total, before);
        await PruneGatesAsync(cancellationToken);
        return total;
    }

    async Task<int> DeleteBatchAsync(DateTime before, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var notifications = db.Set<NotificationRecord>();
        var transitions = db.Set<AlertTransitionRecord>();
        var alerts = db.Set<AlertRecord>();
        // Through the (State, CreatedAt) index; the episode checks use the alerts' (RuleId, Fingerprint) and the
        // transitions' (RuleId, Fingerprint, Episode, Kind) unique indexes.
        var due = notifications
            .Where(n => FinalStates.Contains(n.State) && n.CreatedAt < before)
            .Where(n => !transitions.Any(t => t.Id == n.TransitionId
                && (alerts.Any(a => a.RuleId == t.RuleId && a.Fingerprint == t.Fingerprint && a.Episode == t.Episode && OpenAlertStates.Contains(a.State))
                    || transitions.Any(u => u.RuleId == t.RuleId && u.Fingerprint == t.Fingerprint && u.Episode == t.Episode && u.RoutedAt == null))))
            .OrderBy(n => n.Id).Select(n => n.Id).Take(BatchSize);
        return await notifications.Where(n => due.Contains(n.Id)).ExecuteDeleteAsync(cancellationToken);
    }

    async Task PruneGatesAsync(CancellationToken cancellationToken)
    {
        var idleSince = time.GetUtcNow().UtcDateTime - GateIdle;
        await using var db = dbFactory.CreateDbContext();
        var gates = await db.Set<ReceiverGateRecord>().Where(g => g.NextSendAt < idleSince).ExecuteDeleteAsync(cancellationToken);
        if (gates > 0) LogGatesDeleted(gates, GateIdle);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Notification retention deleted {Gates} receiver send gates idle for more than {Idle}")]
    partial void LogGatesDeleted(int gates, TimeSpan idle);

    [LoggerMessage(Level = LogLevel.Information, Message = "Notification retention deleted {Rows} notifications in a final state written before {Before:O} (their alert episodes are over)")]
    partial void LogDeleted(long rows, DateTime before);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Notification retention failed; retrying on the next pass")]
    partial void LogFailed(Exception exception);
}
