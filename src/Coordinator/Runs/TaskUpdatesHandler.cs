using System.Globalization;
using System.Text.Json;
using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;
using V1TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Coordinator.Runs;

/// <summary>
/// Stores the agents' task updates (Batch payload "tasks") in the ingest transaction, so the ack follows the commit.
/// States only move forward: Started is ignored once the invocation is past Running, and the agent's Finished is final.
/// Decision: a Finished overrides a state the coordinator decided without the agent (Cancelled while still queued,
/// Skipped, DeliveryTimedOut, the TimedOut fallback): the invocation did run, so its real outcome wins.
/// Output chunks are stored once per (invocation, offset); duplicates are ignored.
/// </summary>
sealed class TaskUpdatesHandler(AuditLog audit, RunMessenger messenger, TimeProvider time) : IBatchPayloadHandler
{
    public Batch.PayloadOneofCase Payload => Batch.PayloadOneofCase.Tasks;

    public Task AddAsync(FleetDbContext db, string agentId, Batch batch, CancellationToken cancellationToken) =>
        AddGroupAsync(db, [(agentId, batch)], cancellationToken);

    public async Task AddGroupAsync(FleetDbContext db, IReadOnlyList<(string AgentId, Batch Batch)> batches, CancellationToken cancellationToken)
    {
        var updates = batches.SelectMany(b => b.Batch.Tasks.Updates.Select(u => (b.AgentId, Update: u))).ToList();
        foreach (var (_, u) in updates)
            if (string.IsNullOrEmpty(u.InvocationId) || u.BodyCase == TaskUpdate.BodyOneofCase.None)
                throw new ArgumentException($"tasks: an update for '{u.InvocationId}' has no invocation id or no body");
        var ids = updates.Select(u => u.Update.InvocationId).Distinct().ToList();
        // One query for the affected invocations (tracked: the changes commit with the batch).
        var invocations = await db.Invocations.Where(i => ids.Contains(i.Id)).ToDictionaryAsync(i => i.Id, cancellationToken);
        var runIds = invocations.Values.Select(i => i.RunId).Distinct().ToList();
        var runs = await db.Runs.AsNoTracking().Where(r => runIds.Contains(r.Id)).ToDictionaryAsync(r => r.Id, cancellationToken);
        var secrets = runs.ToDictionary(r => r.Key, r => InvocationUpdates.SecretValues(r.Value));
        var secretTexts = runs.ToDictionary(r => r.Key, r => InvocationUpdates.SecretTexts(r.Value));

        var outputIds = updates.Where(u => u.Update.BodyCase == TaskUpdate.BodyOneofCase.Output).Select(u => u.Update.InvocationId).Distinct().ToList();
        var offsets = updates.Where(u => u.Update.BodyCase == TaskUpdate.BodyOneofCase.Output).Select(u => (long)u.Update.Output.Offset).Distinct().ToList();
        var stored = outputIds.Count == 0 ? [] : (await db.InvocationOutput.AsNoTracking()
                .Where(c => outputIds.Contains(c.InvocationId) && offsets.Contains(c.Offset))
                .Select(c => new { c.InvocationId, c.Offset }).ToListAsync(cancellationToken))
            .Select(c => (c.InvocationId, c.Offset)).ToHashSet();

        var fallbackTime = time.GetUtcNow().UtcDateTime;
        foreach (var (agentId, update) in updates)
        {
            // Unknown ids (a deleted run) and ids of another agent are acknowledged and dropped.
            if (!invocations.TryGetValue(update.InvocationId, out var invocation) || invocation.AgentId != agentId) continue;
            var at = update.Time is null ? fallbackTime : update.Time.ToDateTime();
            switch (update.BodyCase)
            {
                case TaskUpdate.BodyOneofCase.Started:
                    if (invocation.ResultReported || invocation.State is not (InvocationState.Pending or InvocationState.Delayed or InvocationState.Dispatched)) break;
                    invocation.State = InvocationState.Running;
                    invocation.StartedAt = at;
                    invocation.UpdatedAt = at;
                    db.InvocationTransitions.Add(new() { InvocationId = invocation.Id, State = InvocationState.Running, Time = at, Detail = update.Started.DryRun ? "started (dry run)" : "started" });
                    break;
                case TaskUpdate.BodyOneofCase.Output:
                    var offset = checked((long)update.Output.Offset);
                    if (invocation.OutputFinalized || !stored.Add((invocation.Id, offset))) break;
                    db.InvocationOutput.Add(new() { InvocationId = invocation.Id, Offset = offset, Data = OutputMask.Apply(update.Output.Data.ToByteArray(), secrets[invocation.RunId]) });
                    break;
                case TaskUpdate.BodyOneofCase.Finished:
                    if (invocation.ResultReported) break;
                    Finish(db, agentId, runs[invocation.RunId], invocation, update.Finished, secretTexts[invocation.RunId], at);
                    break;
            }
        }
    }

    void Finish(FleetDbContext db, string agentId, RunRecord run, InvocationRecord invocation, TaskFinished finished, IReadOnlyList<string> secrets, DateTime at)
    {
        var state = finished.Status switch
        {
            V1TaskStatus.Succeeded => InvocationState.Succeeded,
            V1TaskStatus.TimedOut => InvocationState.TimedOut,
            V1TaskStatus.Cancelled => InvocationState.Cancelled,
            _ => InvocationState.Failed,
        };
        var previous = invocation.State;
        invocation.State = state;
        invocation.ResultReported = true;
        invocation.StartedAt ??= at;
        invocation.FinishedAt = at;
        invocation.UpdatedAt = at;
        invocation.ExitCode = finished.ExitCode;
        invocation.Summary = Clip(OutputMask.Apply(finished.Summary, secrets), 1024);
        invocation.FiguresJson = JsonSerializer.Serialize(finished.Figures.ToDictionary(f => f.Key, f => f.Value));
        invocation.Error = Clip(OutputMask.Apply(finished.Error, secrets), 4096);
        invocation.FailureKind = Clip(finished.FailureKind, 64);
        invocation.ResultJson = OutputMask.Apply(finished.ResultJson, secrets);
        invocation.OutputBytes = checked((long)finished.OutputBytes);
        var detail = InvocationStates.IsFinal(previous) ? $"reported by the agent (was {RunsApi.StateName(previous)})" : "reported by the agent";
        if (invocation.Error.Length > 0) detail += ": " + Clip(invocation.Error, 900);
        db.InvocationTransitions.Add(new() { InvocationId = invocation.Id, State = state, Time = at, Detail = detail });
        audit.Add(db, new Actor(ActorKind.Agent, agentId, ""), "run.invocation.finished", target: $"run:{run.Id}", host: agentId,
            parameters: new Dictionary<string, string?>
            {
                ["invocation"] = invocation.Id,
                ["task"] = run.Task,
                ["state"] = RunsApi.StateName(state),
                ["exitCode"] = finished.ExitCode.ToString(CultureInfo.InvariantCulture),
                ["summary"] = invocation.Summary,
            },
            outcome: state == InvocationState.Succeeded ? "ok" : $"error: {(invocation.Error.Length > 0 ? invocation.Error : RunsApi.StateName(state))}");
    }

    static string Clip(string value, int max) => value.Length <= max ? value : value[..max];

    public Task AfterCommitAsync(string agentId, Batch batch, CancellationToken cancellationToken)
    {
        messenger.Wake();
        return Task.CompletedTask;
    }
}

/// <summary>When an agent connects: re-send Dispatch for its Dispatched/Running invocations, and wake the engine for its waiting ones.</summary>
sealed partial class RunRedelivery(IDbContextFactory<FleetDbContext> dbFactory, RunMessenger messenger, ILogger<RunRedelivery> logger) : IAgentConnectedHook
{
    public async Task AgentConnectedAsync(AgentSession session, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var agentId = session.AgentId;
        var open = await db.Invocations.AsNoTracking()
            .Where(i => i.AgentId == agentId && !InvocationStates.Final.Contains(i.State))
            .Select(i => new { i.Id, i.RunId, i.State })
            .ToListAsync(cancellationToken);
        if (open.Count == 0) return;
        var inFlight = open.Where(i => i.State is InvocationState.Dispatched or InvocationState.Running).ToList();
        if (inFlight.Count > 0)
        {
            var runIds = inFlight.Select(i => i.RunId).Distinct().ToList();
            var runs = await db.Runs.AsNoTracking().Where(r => runIds.Contains(r.Id)).ToDictionaryAsync(r => r.Id, cancellationToken);
            var ids = inFlight.Select(i => i.Id).ToList();
            await db.Invocations.Where(i => ids.Contains(i.Id)).ExecuteUpdateAsync(s => s.SetProperty(i => i.DispatchAttempts, i => i.DispatchAttempts + 1), cancellationToken);
            foreach (var i in inFlight)
                await session.SendAsync(new CoordinatorMessage { Dispatch = InvocationUpdates.Dispatch(runs[i.RunId], i.Id) }, cancellationToken);
            LogRedelivered(agentId, inFlight.Count);
        }
        if (open.Count > inFlight.Count) messenger.Wake();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Agent {AgentId} connected: re-sent {Count} dispatched invocations")]
    partial void LogRedelivered(string agentId, int count);
}
