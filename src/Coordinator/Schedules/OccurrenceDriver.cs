using System.Globalization;
using System.Text.Json;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol;
using Fleet.Protocol.V1;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Schedules;

/// <summary>
/// Advances waiting and open occurrences: a waiting one opens when no open window shares its hosts; an open one runs
/// its steps one after another (step N+1 starts when step N's run has finished; a failed step with onFailure: stop
/// skips the rest), starts no step within the cutoff, and closes at its end: invocations not yet dispatched become
/// Skipped (window closed), running ones are cancelled or left to finish (onClose). The state lives in the
/// occurrence row and the step runs (deterministic ids), so a restart or another replica carries on where it stood;
/// the row's version makes concurrent advances of one occurrence apply once.
/// </summary>
public sealed partial class OccurrenceDriver(
    IDbContextFactory<FleetDbContext> dbFactory,
    RunCreator creator,
    RunMessenger messenger,
    IAgentPresence presence,
    AuditLog audit,
    ILogger<OccurrenceDriver> logger)
{
    static readonly OccurrenceState[] Active = [OccurrenceState.Waiting, OccurrenceState.Open];
    static readonly InvocationState[] Waiting = [InvocationState.Pending, InvocationState.Delayed];
    const string WindowClosed = "window closed";

    public async Task AdvanceAllAsync(DateTime now, CancellationToken cancellationToken)
    {
        List<string> ids;
        await using (var db = dbFactory.CreateDbContext())
            ids = await db.Set<OccurrenceRecord>().Where(o => Active.Contains(o.State)).OrderBy(o => o.ScheduledUtc).Select(o => o.Id).ToListAsync(cancellationToken);
        foreach (var id in ids)
        {
            try { await AdvanceAsync(id, now, cancellationToken); }
            catch (DbUpdateConcurrencyException)
            {
                LogRaced(id); // another replica advanced it first; the next tick sees its result
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                LogAdvanceFailed(id, ex);
            }
        }
    }

    /// <summary>Open windows of other schedules sharing hosts with this one decide its start: alongside, wait, or skip the shared hosts.</summary>
    internal static async Task<(OccurrenceState State, string Reason, List<string> Hosts)> OverlapAsync(
        FleetDbContext db, ScheduleSpec spec, string occurrenceId, List<string> hosts, DateTime now, CancellationToken cancellationToken)
    {
        if (spec.Overlap == OverlapPolicy.Alongside || hosts.Count == 0) return (OccurrenceState.Open, "", hosts);
        var scheduleId = spec.Id;
        var open = await db.Set<OccurrenceRecord>().AsNoTracking()
            .Where(o => o.State == OccurrenceState.Open && o.ScheduleId != scheduleId && o.Id != occurrenceId && o.EndsUtc > now)
            .Select(o => new { o.ScheduleId, o.HostsJson }).ToListAsync(cancellationToken);
        var shared = new HashSet<string>(StringComparer.Ordinal);
        var with = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var other in open)
        {
            var theirs = JsonSerializer.Deserialize<List<string>>(other.HostsJson) ?? [];
            var common = hosts.Intersect(theirs, StringComparer.Ordinal).ToList();
            if (common.Count == 0) continue;
            shared.UnionWith(common);
            with.Add(other.ScheduleId);
        }
        if (shared.Count == 0) return (OccurrenceState.Open, "", hosts);
        var names = string.Join(", ", with);
        if (spec.Overlap == OverlapPolicy.Wait)
            return (OccurrenceState.Waiting, $"overlap: waiting for open window(s) {names} ({shared.Count} shared hosts)", hosts);
        var kept = hosts.Where(h => !shared.Contains(h)).ToList();
        return kept.Count == 0
            ? (OccurrenceState.Skipped, $"overlap: every host is in open window(s) {names}", kept)
            : (OccurrenceState.Open, $"overlap: {shared.Count} hosts shared with open window(s) {names} skipped", kept);
    }

    async Task AdvanceAsync(string id, DateTime now, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var occurrence = await db.Set<OccurrenceRecord>().SingleAsync(o => o.Id == id, cancellationToken);
        if (!Active.Contains(occurrence.State)) return; // closed by another replica since the list was read
        var spec = ScheduleSpec.FromJson(occurrence.SpecJson);
        var actor = new Actor(ActorKind.Schedule, occurrence.ScheduleId, "");
        var target = $"schedule:{occurrence.ScheduleId}";
        var lastStart = occurrence.EndsUtc - spec.Cutoff;

        if (occurrence.State == OccurrenceState.Waiting)
        {
            if (now >= lastStart)
            {
                Close(db, occurrence, OccurrenceState.Skipped, $"the window ended while waiting ({occurrence.Reason})", now, actor, "occurrence.skipped");
                await SaveAsync(db, occurrence, cancellationToken);
                return;
            }
            var hosts = JsonSerializer.Deserialize<List<string>>(occurrence.HostsJson) ?? [];
            var (state, reason, kept) = await OverlapAsync(db, spec, id, hosts, now, cancellationToken);
            if (state == OccurrenceState.Waiting) return;
            occurrence.State = OccurrenceState.Open;
            occurrence.OpenedAt = now;
            occurrence.Reason = reason.Length > 0 ? reason : "opened after the overlapping window(s) closed";
            occurrence.HostsJson = JsonSerializer.Serialize(kept);
            audit.Add(db, actor, "window.opened", target, parameters: Parameters(occurrence, ("waited", "true")));
            await SaveAsync(db, occurrence, cancellationToken);
            await AdvanceAsync(id, now, cancellationToken); // its first step starts now
            return;
        }

        var steps = JsonSerializer.Deserialize<List<StepState>>(occurrence.StepsJson) ?? [];
        if (now >= occurrence.EndsUtc)
        {
            await CloseAtEndAsync(db, occurrence, spec, steps, now, actor, cancellationToken);
            return;
        }

        var changed = false;
        ScheduleTargets? targets = null;
        foreach (var step in steps)
        {
            if (step.IsFinal) continue;
            var stepSpec = spec.Steps[step.Index];
            if (step.State == StepState.Running)
            {
                var runId = step.RunId!;
                var run = await db.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.Id == runId, cancellationToken);
                if (run is null || run.Status == RunStatus.InProgress) break; // still running (a missing run is created again below on restart)
                step.State = run.Status == RunStatus.Succeeded ? StepState.Succeeded : StepState.Failed;
                step.Reason = run.Status == RunStatus.Succeeded ? "" : $"run {RunsApi.StatusName(run.Status)}{(run.StatusReason.Length > 0 ? ": " + run.StatusReason : "")}";
                changed = true;
                if (step.State == StepState.Failed && stepSpec.StopOnFailure) SkipRest(steps, step.Index, $"step {step.Index + 1} ({step.Task}) failed");
                continue;
            }
            // Pending: start it, unless the cutoff has passed or no host can run it.
            changed = true;
            if (now >= lastStart)
            {
                SkipRest(steps, step.Index - 1, $"cutoff: no step starts in the window's last {Durations.Format(spec.Cutoff)}");
                continue;
            }
            if (targets is null)
            {
                var hosts = JsonSerializer.Deserialize<List<string>>(occurrence.HostsJson) ?? [];
                var agents = hosts.Count == 0 ? [] : await db.Agents.AsNoTracking().Where(a => hosts.Contains(a.Id)).OrderBy(a => a.Hostname).ThenBy(a => a.Id).ToListAsync(cancellationToken);
                targets = ScheduleTargets.Resolve(agents, spec with { Hosts = [ScheduleSpec.AllHosts], Tags = [] });
            }
            if (targets.Unavailable(step.Task) is { } unavailable)
            {
                step.State = StepState.Skipped;
                step.Reason = unavailable;
                continue;
            }
            var runIdToBe = ScheduleIds.StepRun(occurrence.ScheduleId, occurrence.ScheduledUtc, step.Index);
            try
            {
                await creator.CreateScheduledAsync(Request(stepSpec, targets.Offering(step.Task), occurrence.EndsUtc - now), actor, runIdToBe, occurrence.Id, cancellationToken);
                step.State = StepState.Running;
                step.RunId = runIdToBe;
                LogStepStarted(occurrence.ScheduleId, occurrence.Id, step.Index, step.Task, runIdToBe);
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.InvalidArgument)
            {
                step.State = StepState.Failed;
                step.Reason = ex.Status.Detail;
                if (stepSpec.StopOnFailure) SkipRest(steps, step.Index, $"step {step.Index + 1} ({step.Task}) failed");
                continue;
            }
            break; // the next step waits for this one's run
        }

        if (steps.All(s => s.IsFinal))
        {
            var failed = steps.Any(s => s.State is StepState.Failed or StepState.Interrupted);
            var ran = steps.Any(s => s.State is StepState.Succeeded) || failed;
            // A window where no step ran (all unavailable, no hosts, past the cutoff) did nothing: Skipped, not Succeeded.
            var (state, why) = failed ? (OccurrenceState.Failed, "steps finished") : ran ? (OccurrenceState.Succeeded, "steps finished") : (OccurrenceState.Skipped, "no step ran");
            occurrence.StepsJson = JsonSerializer.Serialize(steps);
            Close(db, occurrence, state, why, now, actor, "window.closed");
            await SaveAsync(db, occurrence, cancellationToken);
            LogClosed(occurrence.ScheduleId, occurrence.Id, occurrence.State.ToString(), why);
            return;
        }
        if (!changed) return;
        occurrence.StepsJson = JsonSerializer.Serialize(steps);
        await SaveAsync(db, occurrence, cancellationToken);
    }

    static void SkipRest(List<StepState> steps, int after, string reason)
    {
        foreach (var later in steps.Where(s => s.Index > after && s.State == StepState.Pending))
        {
            later.State = StepState.Skipped;
            later.Reason = reason;
        }
    }

    static CreateRunRequest Request(StepSpec step, List<Agents.AgentRecord> hosts, TimeSpan remaining)
    {
        var request = new CreateRunRequest
        {
            Task = step.Task,
            MaxConcurrency = step.MaxConcurrency,
            MaxErrors = step.MaxErrors,
            ExecutionTimeout = step.ExecutionTimeout,
            // An offline host waits (Delayed) for the rest of the window; the window's close, not the delivery timeout, skips it.
            DeliveryTimeout = Durations.Format(TimeSpan.FromSeconds(Math.Ceiling(remaining.TotalSeconds) + 60)),
            Confirm = true, // an operator wrote this step into the schedule
        };
        request.Parameters.Add(step.Parameters);
        request.Hosts.AddRange(hosts.Select(h => h.Id));
        return request;
    }

    /// <summary>The window's end: the running step's waiting invocations are Skipped, its running ones cancelled (onClose: cancel) or left to finish.</summary>
    async Task CloseAtEndAsync(FleetDbContext db, OccurrenceRecord occurrence, ScheduleSpec spec, List<StepState> steps, DateTime now, Actor actor, CancellationToken cancellationToken)
    {
        var cancels = new List<(string AgentId, CoordinatorMessage Message)>();
        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        foreach (var step in steps.Where(s => s.State == StepState.Running))
        {
            var runId = step.RunId!;
            var run = await db.Runs.SingleOrDefaultAsync(r => r.Id == runId, cancellationToken);
            if (run is null || run.Status != RunStatus.InProgress)
            {
                step.State = run?.Status == RunStatus.Succeeded ? StepState.Succeeded : StepState.Failed;
                continue;
            }
            var skipped = await InvocationUpdates.MoveAsync(db, i => i.RunId == runId, Waiting, InvocationState.Skipped, WindowClosed, now, cancellationToken);
            var detail = $"{WindowClosed} (onClose: {(spec.OnClose == OnClose.Cancel ? "cancel" : "finish")})";
            if (spec.OnClose == OnClose.Cancel)
            {
                var inFlight = await db.Invocations.Where(i => i.RunId == runId && (i.State == InvocationState.Dispatched || i.State == InvocationState.Running)).ToListAsync(cancellationToken);
                foreach (var invocation in inFlight)
                {
                    invocation.CancelRequestedAt = now;
                    db.InvocationTransitions.Add(new() { InvocationId = invocation.Id, State = invocation.State, Time = now, Detail = $"cancel requested ({WindowClosed})" });
                    cancels.Add((invocation.AgentId, new CoordinatorMessage { Cancel = new CancelInvocation { InvocationId = invocation.Id, Reason = WindowClosed } }));
                }
                run.CancelRequested = true;
            }
            if (run.StatusReason.Length == 0) run.StatusReason = WindowClosed;
            step.State = StepState.Interrupted;
            step.Reason = $"{detail}: {skipped.Count} not yet dispatched skipped";
        }
        SkipRest(steps, -1, WindowClosed);
        occurrence.StepsJson = JsonSerializer.Serialize(steps);
        var failed = steps.Any(s => s.State is StepState.Failed or StepState.Interrupted);
        Close(db, occurrence, failed ? OccurrenceState.Failed : OccurrenceState.Succeeded, "window ended", now, actor, "window.closed");
        occurrence.Version++;
        await db.SaveChangesAsync(cancellationToken);
        await tx.CommitAsync(cancellationToken);
        if (cancels.Count > 0)
        {
            var online = await presence.GetAsync(cancels.Select(c => c.AgentId).Distinct().ToList(), cancellationToken);
            await messenger.SendAsync(cancels, online, cancellationToken);
        }
        messenger.Wake();
        LogClosed(occurrence.ScheduleId, occurrence.Id, occurrence.State.ToString(), "window ended");
    }

    void Close(FleetDbContext db, OccurrenceRecord occurrence, OccurrenceState state, string reason, DateTime now, Actor actor, string action)
    {
        occurrence.State = state;
        occurrence.ClosedAt = now;
        occurrence.Reason = reason;
        audit.Add(db, actor, action, $"schedule:{occurrence.ScheduleId}", parameters: Parameters(occurrence, ("reason", reason), ("state", state.ToString().ToLowerInvariant())),
            outcome: state == OccurrenceState.Succeeded ? "ok" : $"error: {state.ToString().ToLowerInvariant()}");
    }

    static Dictionary<string, string?> Parameters(OccurrenceRecord occurrence, params (string Key, string Value)[] extra)
    {
        var parameters = new Dictionary<string, string?>
        {
            ["occurrence"] = occurrence.Id,
            ["scheduled"] = occurrence.ScheduledUtc.ToString("O", CultureInfo.InvariantCulture),
            ["ends"] = occurrence.EndsUtc.ToString("O", CultureInfo.InvariantCulture),
            ["hosts"] = string.Join(",", JsonSerializer.Deserialize<List<string>>(occurrence.HostsJson) ?? []),
        };
        foreach (var (key, value) in extra) parameters[key] = value;
        return parameters;
    }

    static async Task SaveAsync(FleetDbContext db, OccurrenceRecord occurrence, CancellationToken cancellationToken)
    {
        occurrence.Version++;
        await db.SaveChangesAsync(cancellationToken);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Occurrence {OccurrenceId} was advanced by another replica first")]
    partial void LogRaced(string occurrenceId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Occurrence {OccurrenceId}: advancing it failed; tried again next tick")]
    partial void LogAdvanceFailed(string occurrenceId, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Schedule {ScheduleId}, occurrence {OccurrenceId}: step {Step} ({Task}) started as run {RunId}")]
    partial void LogStepStarted(string scheduleId, string occurrenceId, int step, string task, string runId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Schedule {ScheduleId}, occurrence {OccurrenceId}: window closed ({State}, {Reason})")]
    partial void LogClosed(string scheduleId, string occurrenceId, string state, string reason);
}
