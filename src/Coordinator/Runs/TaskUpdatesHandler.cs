using System.Globalization;
using System.Text.Json;
using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using V1TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Coordinator.Runs;

/// <summary>
/// Stores the agents' task updates (Batch payload "tasks") in the ingest transaction, so the ack follows the commit.
/// States only move forward: Started is ignored once the invocation is past Running, and the agent's Finished is final.
/// Decision: a Finished overrides a state the coordinator decided without the agent (Cancelled while still queued,
/// Skipped, DeliveryTimedOut, the TimedOut fallback): the invocation did run, so its real outcome wins.
/// Output chunks are stored once per (invocation, offset); duplicates are ignored.
/// Content never fails the batch: a malformed update (no id, no body, an offset out of range) is skipped on its own,
/// non-finite figures are dropped (the transition says so) and long texts are clipped, so a real result is never lost.
/// The state changes are set-based (PostgreSQL: one UPDATE … FROM unnest per kind; SQLite: one UPDATE per row) with
/// the forward-only rules in their WHERE, and the transitions are bulk-inserted (<see cref="RunBulk"/>).
/// </summary>
sealed partial class TaskUpdatesHandler(AuditLog audit, RunMessenger messenger, TimeProvider time, ILogger<TaskUpdatesHandler> logger) : IBatchPayloadHandler
{
    const int MaxResultJsonChars = 256 * 1024;
    const int MaxFiguresJsonChars = 64 * 1024;
    const int MaxDetailChars = 1024;
    static readonly InvocationState[] Startable = [InvocationState.Pending, InvocationState.Delayed, InvocationState.Dispatched];

    public Batch.PayloadOneofCase Payload => Batch.PayloadOneofCase.Tasks;

    public Task AddAsync(FleetDbContext db, string agentId, Batch batch, CancellationToken cancellationToken) =>
        AddGroupAsync(db, [(agentId, batch)], cancellationToken);

    /// <summary>What one Finished sets (already sanitised).</summary>
    sealed record FinishedRow(string Id, InvocationState State, DateTime StartedAt, DateTime At, int ExitCode, string Summary, string FiguresJson,
        string Error, string FailureKind, string ResultJson, long OutputBytes, string Detail);

    public async Task AddGroupAsync(FleetDbContext db, IReadOnlyList<(string AgentId, Batch Batch)> batches, CancellationToken cancellationToken)
    {
        var updates = new List<(string AgentId, TaskUpdate Update)>();
        foreach (var (agentId, batch) in batches)
            foreach (var u in batch.Tasks.Updates)
            {
                if (string.IsNullOrEmpty(u.InvocationId) || u.BodyCase == TaskUpdate.BodyOneofCase.None) LogSkipped(agentId, u.InvocationId, "no invocation id or no body");
                else updates.Add((agentId, u));
            }
        if (updates.Count == 0) return;
        var ids = updates.Select(u => u.Update.InvocationId).Distinct().ToList();
        // One query for the affected invocations; the changes are written set-based below.
        var invocations = await db.Invocations.AsNoTracking().Where(i => ids.Contains(i.Id))
            .Select(i => new InvocationRecord { Id = i.Id, RunId = i.RunId, AgentId = i.AgentId, Hostname = "", State = i.State, StartedAt = i.StartedAt, ResultReported = i.ResultReported, OutputFinalized = i.OutputFinalized })
            .ToDictionaryAsync(i => i.Id, cancellationToken);
        var runIds = invocations.Values.Select(i => i.RunId).Distinct().ToList();
        var runs = await db.Runs.AsNoTracking().Where(r => runIds.Contains(r.Id)).ToDictionaryAsync(r => r.Id, cancellationToken);
        var secrets = runs.ToDictionary(r => r.Key, r => InvocationUpdates.SecretValues(r.Value));
        var secretTexts = runs.ToDictionary(r => r.Key, r => InvocationUpdates.SecretTexts(r.Value));

        var outputIds = updates.Where(u => u.Update.BodyCase == TaskUpdate.BodyOneofCase.Output).Select(u => u.Update.InvocationId).Distinct().ToList();
        var offsets = updates.Where(u => u.Update.BodyCase == TaskUpdate.BodyOneofCase.Output && u.Update.Output.Offset <= long.MaxValue).Select(u => (long)u.Update.Output.Offset).Distinct().ToList();
        var stored = outputIds.Count == 0 ? [] : (await db.InvocationOutput.AsNoTracking()
                .Where(c => outputIds.Contains(c.InvocationId) && offsets.Contains(c.Offset))
                .Select(c => new { c.InvocationId, c.Offset }).ToListAsync(cancellationToken))
            .Select(c => (c.InvocationId, c.Offset)).ToHashSet();

        var fallbackTime = time.GetUtcNow().UtcDateTime;
        var started = new Dictionary<string, (DateTime At, string Detail)>(StringComparer.Ordinal);
        var finished = new Dictionary<string, FinishedRow>(StringComparer.Ordinal);
        foreach (var (agentId, update) in updates)
        {
            // Unknown ids (a deleted run) and ids of another agent are acknowledged and dropped.
            if (!invocations.TryGetValue(update.InvocationId, out var invocation) || invocation.AgentId != agentId) continue;
            var at = TimeOf(update.Time, fallbackTime);
            switch (update.BodyCase)
            {
                case TaskUpdate.BodyOneofCase.Started:
                    if (invocation.ResultReported || !Startable.Contains(invocation.State)) break;
                    invocation.State = InvocationState.Running;
                    invocation.StartedAt = at;
                    started[invocation.Id] = (at, update.Started.DryRun ? "started (dry run)" : "started");
                    break;
                case TaskUpdate.BodyOneofCase.Output:
                    var data = update.Output.Data;
                    if (update.Output.Offset > (ulong)(long.MaxValue - data.Length))
                    {
                        LogSkipped(agentId, update.InvocationId, $"output offset {update.Output.Offset} out of range");
                        break;
                    }
                    var offset = (long)update.Output.Offset;
                    if (invocation.OutputFinalized || !stored.Add((invocation.Id, offset))) break;
                    db.InvocationOutput.Add(new() { InvocationId = invocation.Id, Offset = offset, Data = OutputMask.Apply(data.ToByteArray(), secrets[invocation.RunId]) });
                    break;
                case TaskUpdate.BodyOneofCase.Finished:
                    if (invocation.ResultReported) break;
                    var row = Finish(agentId, runs[invocation.RunId], invocation, update.Finished, secretTexts[invocation.RunId], at);
                    finished[invocation.Id] = row;
                    invocation.ResultReported = true;
                    invocation.State = row.State;
                    break;
            }
        }
        // A Started and a Finished of one invocation in the same group: both transitions, the Finished's columns.
        var startedRows = started.Where(s => !finished.ContainsKey(s.Key)).Select(s => (Id: s.Key, s.Value.At)).ToList();
        var startedMoved = await InvocationBulk.StartAsync(db, startedRows, Startable, cancellationToken);
        var finishedMoved = await InvocationBulk.FinishAsync(db, finished.Values.ToList(), cancellationToken);
        var transitions = new List<InvocationTransitionRecord>();
        foreach (var (id, (at, detail)) in started)
            if (startedMoved.Contains(id) || finishedMoved.Contains(id))
                transitions.Add(new() { InvocationId = id, State = InvocationState.Running, Time = at, Detail = detail });
        foreach (var row in finished.Values)
            if (finishedMoved.Contains(row.Id))
                transitions.Add(new() { InvocationId = row.Id, State = row.State, Time = row.At, Detail = row.Detail });
        await RunBulk.InsertTransitionsAsync(db, transitions, cancellationToken);
        foreach (var row in finished.Values.Where(r => finishedMoved.Contains(r.Id)))
        {
            var invocation = invocations[row.Id];
            var run = runs[invocation.RunId];
            audit.Add(db, new Actor(ActorKind.Agent, invocation.AgentId, ""), "run.invocation.finished", target: $"run:{run.Id}", host: invocation.AgentId,
                parameters: new Dictionary<string, string?>
                {
                    ["invocation"] = row.Id,
                    ["task"] = run.Task,
                    ["state"] = RunsApi.StateName(row.State),
                    ["exitCode"] = row.ExitCode.ToString(CultureInfo.InvariantCulture),
                    ["summary"] = row.Summary,
                },
                outcome: row.State == InvocationState.Succeeded ? "ok" : $"error: {(row.Error.Length > 0 ? row.Error : RunsApi.StateName(row.State))}");
        }
    }

    FinishedRow Finish(string agentId, RunRecord run, InvocationRecord invocation, TaskFinished finished, IReadOnlyList<string> secrets, DateTime at)
    {
        var state = finished.Status switch
        {
            V1TaskStatus.Succeeded => InvocationState.Succeeded,
            V1TaskStatus.TimedOut => InvocationState.TimedOut,
            V1TaskStatus.Cancelled => InvocationState.Cancelled,
            _ => InvocationState.Failed,
        };
        var previous = invocation.State;
        var notes = new List<string>();
        var figures = new Dictionary<string, double>(StringComparer.Ordinal);
        var dropped = new List<string>();
        var figuresChars = 2;
        foreach (var (key, value) in finished.Figures.OrderBy(f => f.Key, StringComparer.Ordinal))
        {
            if (!double.IsFinite(value)) { dropped.Add(key); continue; }
            figuresChars += key.Length * 6 + 32; // worst case: every character escaped, a long number
            if (figuresChars > MaxFiguresJsonChars) { notes.Add("figures clipped"); break; }
            figures[key] = value;
        }
        if (dropped.Count > 0) notes.Insert(0, $"non-finite figures dropped: {string.Join(", ", dropped.Take(10))}{(dropped.Count > 10 ? ", ..." : "")}");
        var resultJson = OutputMask.Apply(finished.ResultJson, secrets);
        if (resultJson.Length > MaxResultJsonChars)
        {
            resultJson = resultJson[..MaxResultJsonChars];
            notes.Add($"result_json clipped to {MaxResultJsonChars / 1024} KiB");
        }
        var error = Clip(OutputMask.Apply(finished.Error, secrets), 4096);
        var detail = InvocationStates.IsFinal(previous) ? $"reported by the agent (was {RunsApi.StateName(previous)})" : "reported by the agent";
        if (notes.Count > 0) detail += $" ({string.Join("; ", notes)})";
        if (error.Length > 0) detail += ": " + error;
        if (notes.Count > 0) LogSanitised(agentId, invocation.Id, string.Join("; ", notes));
        return new FinishedRow(invocation.Id, state, invocation.StartedAt ?? at, at, finished.ExitCode, Clip(OutputMask.Apply(finished.Summary, secrets), 1024),
            JsonSerializer.Serialize(figures), error, Clip(finished.FailureKind, 64), resultJson,
            finished.OutputBytes > long.MaxValue ? long.MaxValue : (long)finished.OutputBytes, Clip(detail, MaxDetailChars));
    }

    /// <summary>The update's time, or <paramref name="fallback"/> when it is missing or out of DateTime's range.</summary>
    static DateTime TimeOf(Google.Protobuf.WellKnownTypes.Timestamp? stamp, DateTime fallback) =>
        stamp is { Seconds: >= -62_135_596_800 and <= 253_402_300_799, Nanos: >= 0 and <= 999_999_999 } ? stamp.ToDateTime() : fallback;

    static string Clip(string value, int max) => value.Length <= max ? value : value[..max];

    public Task AfterCommitAsync(string agentId, Batch batch, CancellationToken cancellationToken)
    {
        messenger.Wake();
        return Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Skipped a task update from agent {AgentId} for '{InvocationId}': {Problem}")]
    partial void LogSkipped(string agentId, string invocationId, string problem);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Result of {InvocationId} from agent {AgentId} sanitised: {Notes}")]
    partial void LogSanitised(string agentId, string invocationId, string notes);

    /// <summary>The set-based writes of Started and Finished.</summary>
    static class InvocationBulk
    {
        /// <summary>Running for the rows still startable; returns the ids moved.</summary>
        public static async Task<HashSet<string>> StartAsync(FleetDbContext db, List<(string Id, DateTime At)> rows, InvocationState[] from, CancellationToken cancellationToken)
        {
            var moved = new HashSet<string>(StringComparer.Ordinal);
            if (rows.Count == 0) return moved;
            if (db.Database.IsNpgsql())
            {
                var sql = $"""
                    UPDATE invocations AS i SET "State" = {(int)InvocationState.Running}, "StartedAt" = v.at, "UpdatedAt" = v.at
                    FROM unnest(@ids, @ats) AS v(id, at)
                    WHERE i."Id" = v.id AND NOT i."ResultReported" AND i."State" = ANY(@from)
                    RETURNING i."Id"
                    """;
                moved.UnionWith(await BulkInsert.QueryIdsAsync(db, sql,
                    [("ids", rows.Select(r => r.Id).ToArray()), ("ats", rows.Select(r => r.At).ToArray()), ("from", from.Select(s => (int)s).ToArray())], cancellationToken));
                return moved;
            }
            foreach (var (id, at) in rows)
                if (await db.Invocations.Where(i => i.Id == id && !i.ResultReported && from.Contains(i.State))
                        .ExecuteUpdateAsync(s => s.SetProperty(i => i.State, InvocationState.Running).SetProperty(i => i.StartedAt, at).SetProperty(i => i.UpdatedAt, at), cancellationToken) > 0)
                    moved.Add(id);
            return moved;
        }

        /// <summary>The agent's outcome for the rows without one yet (Finished wins over any coordinator-decided state); returns the ids written.</summary>
        public static async Task<HashSet<string>> FinishAsync(FleetDbContext db, List<FinishedRow> rows, CancellationToken cancellationToken)
        {
            var moved = new HashSet<string>(StringComparer.Ordinal);
            if (rows.Count == 0) return moved;
            if (db.Database.IsNpgsql())
            {
                const string sql = """
                    UPDATE invocations AS i SET "State" = v.state, "ResultReported" = true, "StartedAt" = COALESCE(i."StartedAt", v.started),
                        "FinishedAt" = v.at, "UpdatedAt" = v.at, "ExitCode" = v.exit, "Summary" = v.summary, "FiguresJson" = v.figures,
                        "Error" = v.error, "FailureKind" = v.kind, "ResultJson" = v.result, "OutputBytes" = v.bytes
                    FROM unnest(@ids, @states, @starteds, @ats, @exits, @summaries, @figures, @errors, @kinds, @results, @bytes)
                        AS v(id, state, started, at, exit, summary, figures, error, kind, result, bytes)
                    WHERE i."Id" = v.id AND NOT i."ResultReported"
                    RETURNING i."Id"
                    """;
                moved.UnionWith(await BulkInsert.QueryIdsAsync(db, sql,
                [
                    ("ids", rows.Select(r => r.Id).ToArray()), ("states", rows.Select(r => (int)r.State).ToArray()),
                    ("starteds", rows.Select(r => r.StartedAt).ToArray()), ("ats", rows.Select(r => r.At).ToArray()),
                    ("exits", rows.Select(r => r.ExitCode).ToArray()), ("summaries", rows.Select(r => r.Summary).ToArray()),
                    ("figures", rows.Select(r => r.FiguresJson).ToArray()), ("errors", rows.Select(r => r.Error).ToArray()),
                    ("kinds", rows.Select(r => r.FailureKind).ToArray()), ("results", rows.Select(r => r.ResultJson).ToArray()),
                    ("bytes", rows.Select(r => r.OutputBytes).ToArray()),
                ], cancellationToken));
                return moved;
            }
            foreach (var r in rows)
                if (await db.Invocations.Where(i => i.Id == r.Id && !i.ResultReported).ExecuteUpdateAsync(s => s
                        .SetProperty(i => i.State, r.State).SetProperty(i => i.ResultReported, true)
                        .SetProperty(i => i.StartedAt, i => i.StartedAt ?? r.StartedAt)
                        .SetProperty(i => i.FinishedAt, r.At).SetProperty(i => i.UpdatedAt, r.At).SetProperty(i => i.ExitCode, r.ExitCode)
                        .SetProperty(i => i.Summary, r.Summary).SetProperty(i => i.FiguresJson, r.FiguresJson).SetProperty(i => i.Error, r.Error)
                        .SetProperty(i => i.FailureKind, r.FailureKind).SetProperty(i => i.ResultJson, r.ResultJson).SetProperty(i => i.OutputBytes, r.OutputBytes),
                        cancellationToken) > 0)
                    moved.Add(r.Id);
            return moved;
        }
    }
}

/// <summary>
/// When an agent connects: re-send what it may have missed while away, and wake the engine for its waiting invocations.
/// A Dispatched invocation whose cancel was requested is Cancelled here and only the CancelInvocation goes out (it never
/// started as far as we know; the agent's Finished still wins if it did); a Running one gets its Dispatch again and then
/// the CancelInvocation. An invocation past its execution timeout and grace is TimedOut, not redelivered.
/// </summary>
sealed partial class RunRedelivery(IDbContextFactory<FleetDbContext> dbFactory, RunMessenger messenger, IOptions<RunsOptions> options, TimeProvider time, ILogger<RunRedelivery> logger) : IAgentConnectedHook
{
    static readonly InvocationState[] InFlight = [InvocationState.Dispatched, InvocationState.Running];

    public async Task AgentConnectedAsync(AgentSession session, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var agentId = session.AgentId;
        var open = await db.Invocations.AsNoTracking()
            .Where(i => i.AgentId == agentId && !InvocationStates.Final.Contains(i.State))
            .Select(i => new { i.Id, i.RunId, i.State, i.DispatchedAt, i.CancelRequestedAt })
            .ToListAsync(cancellationToken);
        if (open.Count == 0) return;
        var inFlight = open.Where(i => InFlight.Contains(i.State)).ToList();
        if (inFlight.Count > 0)
        {
            var now = InvocationUpdates.Now(time);
            var runIds = inFlight.Select(i => i.RunId).Distinct().ToList();
            var runs = await db.Runs.AsNoTracking().Where(r => runIds.Contains(r.Id)).ToDictionaryAsync(r => r.Id, cancellationToken);
            var overdue = inFlight.Where(i => i.DispatchedAt < RunEngine.Before(now, runs[i.RunId].ExecutionTimeoutMs, options.Value.ExecutionTimeoutGrace)).Select(i => i.Id).ToHashSet();
            await InvocationUpdates.MoveAsync(db, overdue, InFlight, InvocationState.TimedOut, "no result from the agent within the execution timeout and grace", now, cancellationToken);
            var notStarted = inFlight.Where(i => !overdue.Contains(i.Id) && i.CancelRequestedAt is not null && i.State == InvocationState.Dispatched).Select(i => i.Id).ToList();
            var cancelled = (await InvocationUpdates.MoveAsync(db, notStarted, [InvocationState.Dispatched], InvocationState.Cancelled,
                "cancelled before it started (the agent reconnected after the cancel)", now, cancellationToken)).ToHashSet();
            var redeliver = inFlight.Where(i => !overdue.Contains(i.Id) && !cancelled.Contains(i.Id)).ToList();
            var ids = redeliver.Select(i => i.Id).ToList();
            if (ids.Count > 0)
                await db.Invocations.Where(i => ids.Contains(i.Id)).ExecuteUpdateAsync(s => s.SetProperty(i => i.DispatchAttempts, i => i.DispatchAttempts + 1), cancellationToken);
            foreach (var i in redeliver)
                await session.SendAsync(new CoordinatorMessage { Dispatch = InvocationUpdates.Dispatch(runs[i.RunId], i.Id) }, cancellationToken);
            // Cancels after any redelivered Dispatch, so the agent knows the invocation when the cancel arrives.
            foreach (var i in inFlight.Where(i => i.CancelRequestedAt is not null && !overdue.Contains(i.Id)))
                await session.SendAsync(new CoordinatorMessage { Cancel = new CancelInvocation { InvocationId = i.Id, Reason = CancelReason(runs[i.RunId]) } }, cancellationToken);
            LogRedelivered(agentId, redeliver.Count, inFlight.Count(i => i.CancelRequestedAt is not null && !overdue.Contains(i.Id)), overdue.Count);
            if (overdue.Count + cancelled.Count > 0) messenger.Wake();
        }
        if (open.Count > inFlight.Count) messenger.Wake();
    }

    internal static string CancelReason(RunRecord run) => run.StatusReason.Length > 0 ? run.StatusReason : "cancel requested";

    [LoggerMessage(Level = LogLevel.Information, Message = "Agent {AgentId} connected: re-sent {Count} dispatched invocations and {Cancels} cancels; {Overdue} past their execution timeout timed out")]
    partial void LogRedelivered(string agentId, int count, int cancels, int overdue);
}
