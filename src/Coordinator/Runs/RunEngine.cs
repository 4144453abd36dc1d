using System.Data.Common;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Runs;

/// <summary>
/// Drives every active run: timeouts, max errors, canaries, concurrency, dispatch of online hosts (offline ones wait as
/// Delayed), the run's roll-up, and the output finalizer. With several replicas on PostgreSQL exactly one drives
/// (session advisory lock, like the audit sealer); on SQLite the one process does.
/// An invocation is set Dispatched and committed before its Dispatch is sent, so a crash in between leaves a
/// Dispatched invocation that is re-sent when the agent reconnects (the agent's journal makes that harmless).
/// </summary>
public sealed partial class RunEngine(
    IDbContextFactory<FleetDbContext> dbFactory,
    IAgentPresence presence,
    RunMessenger messenger,
    RunSignal signal,
    RunOutput output,
    AuditLog audit,
    IOptions<RunsOptions> options,
    TimeProvider time,
    ILogger<RunEngine> logger) : BackgroundService
{
    const long LockKey = 0x466C65657452756E; // "FleetRun"
    static readonly TimeSpan LeaderRetry = TimeSpan.FromSeconds(2);
    static readonly InvocationState[] Waiting = [InvocationState.Pending, InvocationState.Delayed];
    static readonly InvocationState[] InFlight = [InvocationState.Dispatched, InvocationState.Running];
    /// <summary>At most this many Dispatch and CancelInvocation messages are re-sent per tick.</summary>
    const int MaxResendPerTick = 1000;
    /// <summary>When this engine last re-sent a Dispatch or a cancel for an invocation (entries older than the interval are dropped).</summary>
    readonly Dictionary<string, DateTime> lastResent = new(StringComparer.Ordinal);
    int resendBudget;

    public bool IsLeader { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var lease = await TryLeadAsync(stoppingToken);
                if (lease is null)
                {
                    await Task.Delay(LeaderRetry, time, stoppingToken);
                    continue;
                }
                IsLeader = true;
                LogLeading();
                while (!stoppingToken.IsCancellationRequested)
                {
                    if (lease is Npgsql.NpgsqlConnection connection)
                    {
                        // Still holding the lock? A broken connection throws and another replica takes over.
                        await using var ping = new Npgsql.NpgsqlCommand("SELECT 1", connection);
                        await ping.ExecuteScalarAsync(stoppingToken);
                    }
                    await TickAsync(stoppingToken);
                    await signal.WaitAsync(options.Value.EngineInterval, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is DbException or DbUpdateException or InvalidOperationException or IOException or StackExchange.Redis.RedisException or TimeoutException)
            {
                IsLeader = false;
                LogEngineFailed(ex);
                try { await Task.Delay(TimeSpan.FromSeconds(1), time, stoppingToken); }
                catch (OperationCanceledException) { break; }
            }
        }
        IsLeader = false;
    }

    /// <summary>PostgreSQL: the connection holding the advisory lock (null: another replica leads). SQLite: always leads.</summary>
    async Task<IAsyncDisposable?> TryLeadAsync(CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        if (!db.Database.IsNpgsql()) return new NoLease();
        return await AdvisoryLock.TryAcquireAsync(db.Database.GetConnectionString()!, LockKey, cancellationToken);
    }

    sealed class NoLease : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>One pass over every active run, then the output finalizer.</summary>
    public async Task TickAsync(CancellationToken cancellationToken)
    {
        List<RunRecord> runs;
        await using (var db = dbFactory.CreateDbContext())
            runs = await db.Runs.AsNoTracking().Where(r => r.Status == RunStatus.InProgress).OrderBy(r => r.Id).ToListAsync(cancellationToken);
        var now = InvocationUpdates.Now(time);
        var keep = Max(options.Value.DispatchResendAfter, options.Value.CancelResendInterval);
        foreach (var stale in lastResent.Where(e => now - e.Value > keep).Select(e => e.Key).ToList())
            lastResent.Remove(stale);
        resendBudget = MaxResendPerTick;
        foreach (var run in runs)
        {
            // One bad run (a row no code path expected) must not stop the others, the engine or the host.
            try { await DriveAsync(run, cancellationToken); }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                LogRunFailed(run.Id, ex);
            }
        }
        try { await output.FinalizeAsync(cancellationToken); }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            LogFinalizeFailed(ex);
        }
    }

    static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>
    /// <paramref name="now"/> minus a timeout and an extra span, clamped to the earliest DateTime: a stored timeout of any
    /// size (even one written before the caps existed) gives a cutoff instead of an exception.
    /// </summary>
    internal static DateTime Before(DateTime now, long timeoutMs, TimeSpan extra)
    {
        var ms = Math.Clamp(timeoutMs, 0, now.Ticks / TimeSpan.TicksPerMillisecond);
        var ticks = now.Ticks - ms * TimeSpan.TicksPerMillisecond - Math.Max(0, Math.Min(extra.Ticks, now.Ticks));
        return new DateTime(Math.Max(0, ticks), DateTimeKind.Utc);
    }

    async Task DriveAsync(RunRecord run, CancellationToken cancellationToken)
    {
        var now = InvocationUpdates.Now(time);
        await using var db = dbFactory.CreateDbContext();
        var runId = run.Id;

        // Past the delivery timeout and offline now: DeliveryTimedOut. An online host still queued behind
        // max_concurrency or the canaries keeps its place.
        var deliveryDeadline = Before(now, run.DeliveryTimeoutMs, TimeSpan.Zero);
        var overdue = await db.Invocations.AsNoTracking()
            .Where(i => i.RunId == runId && Waiting.Contains(i.State) && i.CreatedAt < deliveryDeadline)
            .Select(i => new { i.Id, i.AgentId }).ToListAsync(cancellationToken);
        if (overdue.Count > 0)
        {
            var present = await presence.GetAsync(overdue.Select(i => i.AgentId).ToList(), cancellationToken);
            var timedOut = await InvocationUpdates.MoveAsync(db, overdue.Where(i => !present.ContainsKey(i.AgentId)).Select(i => i.Id).ToList(), Waiting,
                InvocationState.DeliveryTimedOut, $"host offline past the delivery timeout ({run.DeliveryTimeout})", now, cancellationToken);
            if (timedOut.Count > 0) LogDeliveryTimedOut(runId, timedOut.Count);
        }
        var executionDeadline = Before(now, run.ExecutionTimeoutMs, options.Value.ExecutionTimeoutGrace);
        await InvocationUpdates.MoveAsync(db, i => i.RunId == runId && i.DispatchedAt < executionDeadline, InFlight,
            InvocationState.TimedOut, "no result from the agent within the execution timeout and grace", now, cancellationToken);
        await ResendAsync(db, run, now, cancellationToken);

        var counts = await CountsAsync(db, runId, cancellationToken);
        var errors = counts.Where(c => InvocationStates.Errors.Contains(c.State)).Sum(c => c.Count);
        if (run.MaxErrorsLimit is { } maxErrors && errors > maxErrors)
            await SkipWaitingAsync(db, run, i => i.RunId == runId, $"max errors ({run.MaxErrors}) reached", now, cancellationToken);
        var onlyCanaries = false;
        if (run.Canary > 0)
        {
            var canaries = counts.Where(c => c.Canary).ToList();
            if (canaries.Any(c => InvocationStates.IsFinal(c.State) && c.State != InvocationState.Succeeded))
                await SkipWaitingAsync(db, run, i => i.RunId == runId && !i.Canary, "canary failed", now, cancellationToken);
            onlyCanaries = canaries.Any(c => c.State != InvocationState.Succeeded);
        }

        var inFlight = counts.Where(c => InFlight.Contains(c.State)).Sum(c => c.Count);
        var slots = run.MaxConcurrencyLimit is { } max ? max - inFlight : int.MaxValue;
        if (slots > 0 && !run.CancelRequested)
            await DispatchAsync(db, run, onlyCanaries, slots, now, cancellationToken);

        counts = await CountsAsync(db, runId, cancellationToken);
        if (counts.All(c => InvocationStates.IsFinal(c.State)))
            await FinishAsync(db, run, counts, now, cancellationToken);
    }

    async Task DispatchAsync(FleetDbContext db, RunRecord run, bool onlyCanaries, int slots, DateTime now, CancellationToken cancellationToken)
    {
        var candidates = await db.Invocations.AsNoTracking()
            .Where(i => i.RunId == run.Id && Waiting.Contains(i.State) && (!onlyCanaries || i.Canary))
            .OrderBy(i => i.Ordinal)
            .Select(i => new { i.Id, i.AgentId, i.State })
            .ToListAsync(cancellationToken);
        if (candidates.Count == 0) return;
        var online = await presence.GetAsync(candidates.Select(c => c.AgentId).ToList(), cancellationToken);
        var offline = candidates.Where(c => c.State == InvocationState.Pending && !online.ContainsKey(c.AgentId)).Select(c => c.Id).ToList();
        await InvocationUpdates.MoveAsync(db, offline, [InvocationState.Pending], InvocationState.Delayed, "host offline: waiting for it to connect", now, cancellationToken);

        var chosen = candidates.Where(c => online.ContainsKey(c.AgentId)).Take(slots).ToDictionary(c => c.Id, c => c.AgentId);
        var moved = await InvocationUpdates.MoveAsync(db, chosen.Keys, Waiting, InvocationState.Dispatched, "dispatched", now, cancellationToken);
        if (moved.Count == 0) return;
        var messages = moved.Select(id => (chosen[id], new CoordinatorMessage { Dispatch = InvocationUpdates.Dispatch(run, id) })).ToList();
        var sent = await messenger.SendAsync(messages, online, cancellationToken);
        LogDispatched(run.Id, moved.Count, sent);
    }

    /// <summary>
    /// Messages that may have been lost while the agent stayed connected (presence read before the commit, Redis
    /// pub/sub at most once, a local send that timed out): a Dispatch not started after <see cref="RunsOptions.DispatchResendAfter"/>,
    /// and a CancelInvocation every <see cref="RunsOptions.CancelResendInterval"/> until the agent reports. Only to agents
    /// online now; the agent's journal makes a duplicate harmless. Bounded per tick.
    /// </summary>
    async Task ResendAsync(FleetDbContext db, RunRecord run, DateTime now, CancellationToken cancellationToken)
    {
        if (resendBudget <= 0) return;
        var runId = run.Id;
        var dispatchBefore = now - options.Value.DispatchResendAfter;
        var cancelBefore = now - options.Value.CancelResendInterval;
        var candidates = await db.Invocations.AsNoTracking()
            .Where(i => i.RunId == runId && InFlight.Contains(i.State) && !i.ResultReported
                && (i.CancelRequestedAt != null ? i.CancelRequestedAt < cancelBefore : i.State == InvocationState.Dispatched && i.StartedAt == null && i.DispatchedAt < dispatchBefore))
            .OrderBy(i => i.Ordinal)
            .Select(i => new { i.Id, i.AgentId, Cancel = i.CancelRequestedAt != null })
            .Take(resendBudget * 2)
            .ToListAsync(cancellationToken);
        var due = candidates.Where(c => !lastResent.TryGetValue(c.Id, out var at) || at < (c.Cancel ? cancelBefore : dispatchBefore)).Take(resendBudget).ToList();
        if (due.Count == 0) return;
        var online = await presence.GetAsync(due.Select(c => c.AgentId).Distinct().ToList(), cancellationToken);
        due = due.Where(c => online.ContainsKey(c.AgentId)).ToList();
        if (due.Count == 0) return;
        resendBudget -= due.Count;
        var dispatchIds = due.Where(c => !c.Cancel).Select(c => c.Id).ToList();
        if (dispatchIds.Count > 0)
            await db.Invocations.Where(i => dispatchIds.Contains(i.Id)).ExecuteUpdateAsync(s => s.SetProperty(i => i.DispatchAttempts, i => i.DispatchAttempts + 1), cancellationToken);
        var reason = RunRedelivery.CancelReason(run);
        var messages = due.Select(c => (c.AgentId, c.Cancel
            ? new CoordinatorMessage { Cancel = new CancelInvocation { InvocationId = c.Id, Reason = reason } }
            : new CoordinatorMessage { Dispatch = InvocationUpdates.Dispatch(run, c.Id) })).ToList();
        foreach (var c in due) lastResent[c.Id] = now;
        var sent = await messenger.SendAsync(messages, online, cancellationToken);
        LogResent(run.Id, dispatchIds.Count, due.Count - dispatchIds.Count, sent);
    }

    async Task SkipWaitingAsync(FleetDbContext db, RunRecord run, System.Linq.Expressions.Expression<Func<InvocationRecord, bool>> where, string reason, DateTime now, CancellationToken cancellationToken)
    {
        var skipped = await InvocationUpdates.MoveAsync(db, where, Waiting, InvocationState.Skipped, reason, now, cancellationToken);
        if (skipped.Count == 0 && run.StatusReason.Length > 0) return;
        var runId = run.Id;
        await db.Runs.Where(r => r.Id == runId && r.StatusReason == "").ExecuteUpdateAsync(s => s.SetProperty(r => r.StatusReason, reason), cancellationToken);
        if (run.StatusReason.Length == 0) run.StatusReason = reason;
        if (skipped.Count > 0) LogSkipped(run.Id, skipped.Count, reason);
    }

    async Task FinishAsync(FleetDbContext db, RunRecord run, List<StateCount> counts, DateTime now, CancellationToken cancellationToken)
    {
        var tracked = await db.Runs.SingleAsync(r => r.Id == run.Id, cancellationToken);
        if (tracked.Status != RunStatus.InProgress) return;
        tracked.Status = counts.All(c => c.State == InvocationState.Succeeded) ? RunStatus.Succeeded
            : tracked.CancelRequested ? RunStatus.Cancelled
            : RunStatus.Failed;
        tracked.FinishedAt = now;
        audit.Add(db, Actor.System("runs"), "run.finished", target: $"run:{run.Id}",
            parameters: new Dictionary<string, string?>
            {
                ["task"] = run.Task,
                ["status"] = RunsApi.StatusName(tracked.Status),
                ["hosts"] = counts.Sum(c => c.Count).ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["succeeded"] = counts.Where(c => c.State == InvocationState.Succeeded).Sum(c => c.Count).ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["reason"] = tracked.StatusReason,
            },
            outcome: tracked.Status == RunStatus.Succeeded ? "ok" : $"error: {RunsApi.StatusName(tracked.Status)}");
        await db.SaveChangesAsync(cancellationToken);
        LogFinished(run.Id, RunsApi.StatusName(tracked.Status));
    }

    internal sealed record StateCount(InvocationState State, bool Canary, int Count);

    internal static Task<List<StateCount>> CountsAsync(FleetDbContext db, string runId, CancellationToken cancellationToken) =>
        db.Invocations.Where(i => i.RunId == runId)
            .GroupBy(i => new { i.State, i.Canary })
            .Select(g => new StateCount(g.Key.State, g.Key.Canary, g.Count()))
            .ToListAsync(cancellationToken);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run engine leading on this replica")]
    partial void LogLeading();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run engine failed or lost leadership; retrying")]
    partial void LogEngineFailed(Exception exception);

    [LoggerMessage(Level = LogLevel.Error, Message = "Run {RunId}: driving it failed; the other runs carry on and this one is tried again next tick")]
    partial void LogRunFailed(string runId, Exception exception);

    [LoggerMessage(Level = LogLevel.Error, Message = "Run output finalizer failed; tried again next tick")]
    partial void LogFinalizeFailed(Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId}: re-sent {Dispatches} dispatches not started and {Cancels} cancels not answered ({Sent} handed to a stream)")]
    partial void LogResent(string runId, int dispatches, int cancels, int sent);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Run {RunId}: dispatched {Count} invocations ({Sent} handed to a stream)")]
    partial void LogDispatched(string runId, int count, int sent);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId}: {Count} invocations not delivered within the delivery timeout")]
    partial void LogDeliveryTimedOut(string runId, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId}: {Count} invocations skipped ({Reason})")]
    partial void LogSkipped(string runId, int count, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId} finished: {Status}")]
    partial void LogFinished(string runId, string status);
}
