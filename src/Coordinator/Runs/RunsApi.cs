using System.Text;
using System.Text.Json;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using V1 = Fleet.Protocol.V1;

namespace Fleet.Coordinator.Runs;

/// <summary>Ops API for runs: gRPC, and REST under /api/v1/runs through JSON transcoding.</summary>
sealed partial class RunsApi(
    IDbContextFactory<FleetDbContext> dbFactory,
    RunCreator creator,
    RunMessenger messenger,
    RunOutput output,
    IAgentPresence presence,
    AuditLog audit,
    IOptions<RunsOptions> options,
    TimeProvider time,
    ILogger<RunsApi> logger) : V1.Runs.RunsBase
{
    const int DefaultPageSize = 50;
    const int MaxPageSize = 500;

    public override async Task<Run> CreateRun(CreateRunRequest request, ServerCallContext context)
    {
        var run = await creator.CreateAsync(request, context.Actor(), retryOf: null, context.CancellationToken);
        return await LoadAsync(run.Id, RunView.Counts, context.CancellationToken);
    }

    public override async Task<PreviewRunResponse> PreviewRun(CreateRunRequest request, ServerCallContext context)
    {
        await using var db = dbFactory.CreateDbContext();
        var plan = await creator.PlanAsync(db, request, context.CancellationToken);
        var online = await presence.GetAsync(plan.Hosts.Select(h => h.Id).ToList(), context.CancellationToken);
        var response = new PreviewRunResponse { Task = plan.Task.Name, Destructive = plan.Destructive };
        var index = 0;
        foreach (var host in plan.Hosts)
        {
            var preview = new PreviewHost { AgentId = host.Id, Hostname = host.Hostname, Online = online.ContainsKey(host.Id), Canary = index++ < request.Canary };
            preview.Tags.Add(Agents.AgentRegistry.Tags(host));
            response.Hosts.Add(preview);
        }
        return response;
    }

    public override async Task<ListRunsResponse> ListRuns(ListRunsRequest request, ServerCallContext context)
    {
        if (request.PageSize is < 0 or > MaxPageSize)
            throw ApiArguments.Invalid($"page_size: {request.PageSize} is out of range (1-{MaxPageSize}, 0 for {DefaultPageSize})");
        if (!System.Enum.IsDefined(request.Status))
            throw ApiArguments.Invalid($"status: '{request.Status}' is not a valid run status");
        var size = request.PageSize == 0 ? DefaultPageSize : request.PageSize;
        await using var db = dbFactory.CreateDbContext();
        var query = db.Runs.AsNoTracking();
        if (request.Task.Length > 0) query = query.Where(r => r.Task == request.Task);
        if (request.Status != RunStatus.Unspecified) query = query.Where(r => r.Status == request.Status);
        if (request.PageToken.Length > 0)
        {
            var after = request.PageToken;
            query = query.Where(r => string.Compare(r.Id, after) < 0);
        }
        var runs = await query.OrderByDescending(r => r.Id).Take(size + 1).ToListAsync(context.CancellationToken);
        var page = runs.Take(size).ToList();
        var ids = page.Select(r => r.Id).ToList();
        var counts = (await db.Invocations.Where(i => ids.Contains(i.RunId))
                .GroupBy(i => new { i.RunId, i.State }).Select(g => new { g.Key.RunId, g.Key.State, Count = g.Count() })
                .ToListAsync(context.CancellationToken))
            .ToLookup(c => c.RunId, c => (c.State, c.Count));
        var response = new ListRunsResponse { NextPageToken = runs.Count > size ? page[^1].Id : "" };
        response.Runs.AddRange(page.Select(r => ToMessage(r, counts[r.Id])));
        return response;
    }

    public override Task<Run> GetRun(GetRunRequest request, ServerCallContext context) =>
        LoadAsync(RequireId(request.Id, "id"), RunView.Full, context.CancellationToken);

    public override async Task<Run> CancelRun(CancelRunRequest request, ServerCallContext context)
    {
        var id = RequireId(request.Id, "id");
        if (request.AgentId.Length > 0) ApiArguments.AgentId(request.AgentId, "agent_id");
        var actor = context.Actor();
        var reason = request.Reason.Length > 0 ? $"cancelled by {actor.Name}: {request.Reason}" : $"cancelled by {actor.Name}";
        reason = reason[..Math.Min(reason.Length, 500)];
        var now = InvocationUpdates.Now(time);
        await using var db = dbFactory.CreateDbContext();
        var run = await db.Runs.SingleOrDefaultAsync(r => r.Id == id, context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"run '{id}' not found"));
        var agentId = request.AgentId;
        if (agentId.Length > 0 && !await db.Invocations.AnyAsync(i => i.RunId == id && i.AgentId == agentId, context.CancellationToken))
            throw new RpcException(new Status(StatusCode.NotFound, $"agent_id: run '{id}' has no invocation on '{agentId}'"));
        if (run.Status != RunStatus.InProgress)
            return await LoadAsync(id, RunView.Full, context.CancellationToken);

        await using var tx = await db.Database.BeginTransactionAsync(context.CancellationToken);
        if (agentId.Length == 0)
        {
            run.CancelRequested = true;
            run.StatusReason = reason;
        }
        await InvocationUpdates.MoveAsync(db, i => i.RunId == id && (agentId == "" || i.AgentId == agentId),
            [InvocationState.Pending, InvocationState.Delayed], InvocationState.Cancelled, reason, now, context.CancellationToken);
        var inFlight = await db.Invocations
            .Where(i => i.RunId == id && (agentId == "" || i.AgentId == agentId) && (i.State == InvocationState.Dispatched || i.State == InvocationState.Running))
            .ToListAsync(context.CancellationToken);
        foreach (var invocation in inFlight)
        {
            invocation.CancelRequestedAt = now;
            db.InvocationTransitions.Add(new() { InvocationId = invocation.Id, State = invocation.State, Time = now, Detail = $"cancel requested ({reason})" });
        }
        audit.Add(db, actor, "run.cancelled", target: $"run:{id}", host: agentId,
            parameters: new Dictionary<string, string?> { ["task"] = run.Task, ["agent"] = agentId.Length > 0 ? agentId : null, ["reason"] = request.Reason, ["inFlight"] = inFlight.Count.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        await db.SaveChangesAsync(context.CancellationToken);
        await tx.CommitAsync(context.CancellationToken);

        if (inFlight.Count > 0)
        {
            var online = await presence.GetAsync(inFlight.Select(i => i.AgentId).ToList(), context.CancellationToken);
            await messenger.SendAsync(inFlight.Select(i => (i.AgentId, new CoordinatorMessage { Cancel = new CancelInvocation { InvocationId = i.Id, Reason = reason } })).ToList(),
                online, context.CancellationToken);
        }
        LogCancelled(id, agentId, actor.ToString(), inFlight.Count);
        messenger.Wake();
        return await LoadAsync(id, RunView.Full, context.CancellationToken);
    }

    /// <summary>What retry --failed takes again: every final state but Succeeded.</summary>
    static readonly InvocationState[] Retryable =
        [InvocationState.Failed, InvocationState.TimedOut, InvocationState.DeliveryTimedOut, InvocationState.Cancelled, InvocationState.Skipped];

    public override async Task<Run> RetryRun(RetryRunRequest request, ServerCallContext context)
    {
        var id = RequireId(request.Id, "id");
        await using var db = dbFactory.CreateDbContext();
        var original = await db.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.Id == id, context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"run '{id}' not found"));
        // Retrying a live run would run its in-flight invocations a second time.
        if (original.Status == RunStatus.InProgress)
            throw new RpcException(new Status(StatusCode.FailedPrecondition, $"run '{id}' is {StatusName(original.Status)}: retry it once it has finished (or cancel it first)"));
        var hosts = await db.Invocations.AsNoTracking()
            .Where(i => i.RunId == id && (!request.FailedOnly || Retryable.Contains(i.State)))
            .OrderBy(i => i.Ordinal).Select(i => i.AgentId).ToListAsync(context.CancellationToken);
        if (hosts.Count == 0)
            throw ApiArguments.Invalid($"failed_only: every invocation of run '{id}' succeeded; nothing to retry");
        var retry = new CreateRunRequest
        {
            Task = original.Task,
            MaxConcurrency = original.MaxConcurrency,
            MaxErrors = original.MaxErrors,
            Canary = (uint)Math.Min(original.Canary, hosts.Count),
            DeliveryTimeout = original.DeliveryTimeout,
            ExecutionTimeout = original.ExecutionTimeout,
            DryRun = original.DryRun,
            Confirm = request.Confirm,
            ClientToken = request.ClientToken,
        };
        retry.Parameters.Add(InvocationUpdates.Parameters(original));
        retry.Hosts.AddRange(hosts);
        var run = await creator.CreateAsync(retry, context.Actor(), retryOf: id, context.CancellationToken);
        return await LoadAsync(run.Id, RunView.Full, context.CancellationToken);
    }

    public override async Task WatchRun(GetRunRequest request, IServerStreamWriter<Run> responseStream, ServerCallContext context)
    {
        var id = RequireId(request.Id, "id");
        ByteString? last = null;
        while (true)
        {
            // Polling the database works whichever replica drives the run.
            var run = await LoadAsync(id, RunView.States, context.CancellationToken);
            var bytes = run.ToByteString();
            if (last is null || !bytes.Equals(last))
            {
                await responseStream.WriteAsync(run, context.CancellationToken);
                last = bytes;
            }
            if (run.Status != RunStatus.InProgress) return;
            await Task.Delay(options.Value.WatchInterval, time, context.CancellationToken);
        }
    }

    public override async Task GetInvocationOutput(GetInvocationOutputRequest request, IServerStreamWriter<OutputChunk> responseStream, ServerCallContext context)
    {
        var invocation = await FindInvocationAsync(dbFactory, RequireId(request.RunId, "run_id"), request.AgentId, context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"agent_id: run '{request.RunId}' has no invocation on '{request.AgentId}'"));
        await foreach (var piece in output.ReadAsync(invocation, context.CancellationToken))
            await responseStream.WriteAsync(new OutputChunk { Data = ByteString.CopyFrom(piece.Span) }, context.CancellationToken);
    }

    /// <summary>The invocation of a run on a host given by agent id or hostname.</summary>
    internal static async Task<InvocationRecord?> FindInvocationAsync(IDbContextFactory<FleetDbContext> dbFactory, string runId, string host, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        return await db.Invocations.AsNoTracking().Where(i => i.RunId == runId && (i.AgentId == host || i.Hostname == host))
            .OrderBy(i => i.AgentId == host ? 0 : 1).FirstOrDefaultAsync(cancellationToken);
    }

    static string RequireId(string id, string field) =>
        string.IsNullOrWhiteSpace(id) || id.Length > RunIds.MaxLength ? throw ApiArguments.Invalid($"{field}: '{id}' is not a run id") : id;

    /// <summary>At most this many not-yet-finalized outputs are read from the staged chunks per request.</summary>
    const int MaxStagedOutputs = 50;

    /// <summary>GetRun carries the head and tail of at most this many invocations' outputs (failures first, then in host order).</summary>
    internal const int MaxOutputsPerResponse = 100;

    /// <summary>
    /// How much of the run a response carries, so a run over thousands of hosts stays far below a client's 4 MB receive
    /// limit (see decision 0003): CreateRun the counts only; WatchRun each invocation's state, exit code, summary and
    /// error (no output, figures, result or transitions); GetRun everything, but output head and tail for at most
    /// <see cref="MaxOutputsPerResponse"/> invocations (the others empty with output_truncated set: download them).
    /// </summary>
    enum RunView { Counts, States, Full }

    /// <summary>The run with its counts and, depending on <paramref name="view"/>, its invocations.</summary>
    async Task<Run> LoadAsync(string id, RunView view, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        // One snapshot: the finalizer may move an output from the staged chunks to the row between two reads.
        await using var snapshot = view == RunView.Full ? await db.Database.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken) : null;
        var run = await db.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.Id == id, cancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"run '{id}' not found"));
        if (view == RunView.Counts)
        {
            var counts = await db.Invocations.Where(i => i.RunId == id).GroupBy(i => i.State).Select(g => new { g.Key, Count = g.Count() }).ToListAsync(cancellationToken);
            return ToMessage(run, counts.Select(c => (c.Key, c.Count)));
        }
        // Without the output columns: those are read below for the few invocations that carry them.
        var invocations = await db.Invocations.AsNoTracking().Where(i => i.RunId == id).OrderBy(i => i.Ordinal)
            .Select(i => new InvocationRecord
            {
                Id = i.Id, RunId = i.RunId, AgentId = i.AgentId, Hostname = i.Hostname, Ordinal = i.Ordinal, Canary = i.Canary, State = i.State,
                CreatedAt = i.CreatedAt, DispatchedAt = i.DispatchedAt, StartedAt = i.StartedAt, FinishedAt = i.FinishedAt, UpdatedAt = i.UpdatedAt,
                ResultReported = i.ResultReported, ExitCode = i.ExitCode, Summary = i.Summary, Error = i.Error, FailureKind = i.FailureKind,
                FiguresJson = view == RunView.Full ? i.FiguresJson : "{}", ResultJson = view == RunView.Full ? i.ResultJson : "",
                OutputBytes = i.OutputBytes, OutputFinalized = i.OutputFinalized,
            })
            .ToListAsync(cancellationToken);
        var message = ToMessage(run, invocations.GroupBy(i => i.State).Select(g => (g.Key, g.Count())));
        if (view == RunView.States)
        {
            message.Invocations.AddRange(invocations.Select(i => ToMessage(i, [], withOutput: false)));
            return message;
        }
        var transitions = (await db.InvocationTransitions.AsNoTracking()
                .Where(t => db.Invocations.Any(i => i.RunId == id && i.Id == t.InvocationId))
                .OrderBy(t => t.Id).ToListAsync(cancellationToken))
            .ToLookup(t => t.InvocationId);
        message.Invocations.AddRange(invocations.Select(i => ToMessage(i, transitions[i.Id], withOutput: true)));
        var shown = invocations.Select((record, n) => (record, n))
            .Where(x => x.record.OutputBytes > 0 || !(x.record.OutputFinalized || x.record.State is InvocationState.Pending or InvocationState.Delayed or InvocationState.Dispatched))
            .OrderBy(x => x.record.State == InvocationState.Succeeded ? 1 : 0).ThenBy(x => x.n)
            .Take(MaxOutputsPerResponse).ToList();
        var finalizedIds = shown.Where(x => x.record.OutputFinalized && x.record.OutputBytes > 0).Select(x => x.record.Id).ToList();
        var inline = (await db.Invocations.AsNoTracking().Where(i => finalizedIds.Contains(i.Id)).Select(i => new { i.Id, i.OutputHead, i.OutputTail }).ToListAsync(cancellationToken))
            .ToDictionary(i => i.Id);
        // Output not finalized yet (running, or finished a moment ago): head and tail from the staged chunks.
        var secrets = InvocationUpdates.SecretValues(run);
        var staged = 0;
        foreach (var (record, n) in shown)
        {
            byte[] head, tail;
            if (record.OutputFinalized)
                (head, tail) = inline.TryGetValue(record.Id, out var kept) ? (kept.OutputHead, kept.OutputTail) : ([], []);
            else if (staged++ < MaxStagedOutputs)
                (head, tail) = await output.StagedInlineAsync(db, record, secrets, cancellationToken);
            else
                continue;
            var invocation = message.Invocations[n];
            invocation.OutputHead = Encoding.UTF8.GetString(head);
            invocation.OutputTail = Encoding.UTF8.GetString(tail);
            invocation.OutputTruncated = record.OutputBytes > head.Length + tail.Length;
        }
        return message;
    }

    internal static Dictionary<string, string> ShownParameters(RunRecord run)
    {
        var secrets = InvocationUpdates.SecretNames(run);
        return InvocationUpdates.Parameters(run).ToDictionary(p => p.Key, p => secrets.Contains(p.Key) ? AuditLog.Redacted : p.Value);
    }

    static Run ToMessage(RunRecord r, IEnumerable<(InvocationState State, int Count)> counts)
    {
        var run = new Run
        {
            Id = r.Id,
            Task = r.Task,
            MaxConcurrency = r.MaxConcurrency,
            MaxErrors = r.MaxErrors,
            Canary = (uint)r.Canary,
            DeliveryTimeout = r.DeliveryTimeout,
            ExecutionTimeout = r.ExecutionTimeout,
            DryRun = r.DryRun,
            ClientToken = r.ClientToken ?? "",
            Status = r.Status,
            CreatedBy = r.CreatedBy,
            CreatedAt = Timestamp.FromDateTime(r.CreatedAt),
            FinishedAt = r.FinishedAt is { } f ? Timestamp.FromDateTime(f) : null,
            RetryOf = r.RetryOf ?? "",
            StatusReason = r.StatusReason,
            Counts = new RunCounts(),
        };
        run.Parameters.Add(ShownParameters(r));
        run.Hosts.AddRange(JsonSerializer.Deserialize<List<string>>(r.HostsJson) ?? []);
        run.Tags.AddRange(JsonSerializer.Deserialize<List<string>>(r.TagsJson) ?? []);
        foreach (var (state, n) in counts)
        {
            run.Counts.Total += n;
            switch (state)
            {
                case InvocationState.Pending: run.Counts.Pending += n; break;
                case InvocationState.Delayed: run.Counts.Delayed += n; break;
                case InvocationState.Dispatched: run.Counts.Dispatched += n; break;
                case InvocationState.Running: run.Counts.Running += n; break;
                case InvocationState.Succeeded: run.Counts.Succeeded += n; break;
                case InvocationState.Failed: run.Counts.Failed += n; break;
                case InvocationState.TimedOut: run.Counts.TimedOut += n; break;
                case InvocationState.Cancelled: run.Counts.Cancelled += n; break;
                case InvocationState.DeliveryTimedOut: run.Counts.DeliveryTimedOut += n; break;
                case InvocationState.Skipped: run.Counts.Skipped += n; break;
            }
        }
        return run;
    }

    /// <summary>An invocation as the API shows it; head and tail are filled in by <see cref="LoadAsync"/> for the few that carry them.</summary>
    static Invocation ToMessage(InvocationRecord i, IEnumerable<InvocationTransitionRecord> transitions, bool withOutput)
    {
        var invocation = new Invocation
        {
            Id = i.Id,
            RunId = i.RunId,
            AgentId = i.AgentId,
            Hostname = i.Hostname,
            State = i.State,
            Canary = i.Canary,
            UpdatedAt = Timestamp.FromDateTime(i.UpdatedAt),
            StartedAt = i.StartedAt is { } s ? Timestamp.FromDateTime(s) : null,
            FinishedAt = i.FinishedAt is { } f ? Timestamp.FromDateTime(f) : null,
            ExitCode = i.ExitCode,
            Summary = i.Summary,
            Error = i.Error,
            FailureKind = i.FailureKind,
            ResultJson = i.ResultJson,
            OutputBytes = (ulong)i.OutputBytes,
            OutputTruncated = withOutput && i.OutputBytes > 0,
        };
        invocation.Figures.Add(JsonSerializer.Deserialize<Dictionary<string, double>>(i.FiguresJson) ?? []);
        invocation.Transitions.AddRange(transitions.Select(t => new InvocationTransition { State = t.State, Time = Timestamp.FromDateTime(t.Time), Detail = t.Detail }));
        return invocation;
    }

    public static string StatusName(RunStatus status) => status switch
    {
        RunStatus.InProgress => "in-progress",
        RunStatus.Succeeded => "succeeded",
        RunStatus.Failed => "failed",
        RunStatus.Cancelled => "cancelled",
        _ => "unspecified",
    };

    public static string StateName(InvocationState state) => state switch
    {
        InvocationState.DeliveryTimedOut => "delivery-timed-out",
        InvocationState.TimedOut => "timed-out",
        _ => state.ToString().ToLowerInvariant(),
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId} cancel (agent '{AgentId}') by {Actor}: {InFlight} in-flight invocations asked to stop")]
    partial void LogCancelled(string runId, string agentId, string actor, int inFlight);
}
