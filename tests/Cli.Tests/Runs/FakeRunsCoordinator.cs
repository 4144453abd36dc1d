using System.Collections.Concurrent;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;

namespace Fleet.Cli.Tests.Runs;

/// <summary>The Runs service from memory: runs created from requests, watch updates and outputs set by the test.</summary>
public sealed class FakeRunsCoordinator : FakeGrpcServer
{
    private FakeRunsCoordinator() => Service = Serve(new FakeRunsService());

    public FakeRunsService Service { get; }

    public static async Task<FakeRunsCoordinator> StartAsync()
    {
        var coordinator = new FakeRunsCoordinator();
        await coordinator.ListenAsync();
        return coordinator;
    }
}

public sealed record ReceivedRunsCall(string Method, string? User, IMessage Request);

public sealed class FakeRunsService : Fleet.Protocol.V1.Runs.RunsBase
{
    private readonly ConcurrentDictionary<string, Run> _byToken = new();
    private int _created;

    public ConcurrentQueue<ReceivedRunsCall> Calls { get; } = new();

    /// <summary>Runs by id: those CreateRun made, and any the test puts here.</summary>
    public ConcurrentDictionary<string, Run> Runs { get; } = new();

    /// <summary>Refuses a CreateRun (or PreviewRun) request, as the coordinator's validation would.</summary>
    public Func<CreateRunRequest, RpcException?> Reject { get; set; } = _ => null;

    /// <summary>This many CreateRun calls create the run and then fail with Unavailable, as if the answer was lost.</summary>
    public int LoseAnswers { get; set; }

    public PreviewRunResponse Preview { get; set; } = new();

    /// <summary>What WatchRun sends for a run id, in order; without an entry it sends the stored run once.</summary>
    public ConcurrentDictionary<string, Run[]> WatchUpdates { get; } = new();

    /// <summary>When set, WatchRun keeps the stream open after its updates until the client goes away.</summary>
    public bool HoldWatchOpen { get; set; }

    /// <summary>Completed once WatchRun has sent its updates.</summary>
    public TaskCompletionSource UpdatesSent { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Stored output per (run id, agent id).</summary>
    public ConcurrentDictionary<(string RunId, string AgentId), byte[]> Outputs { get; } = new();

    public IEnumerable<T> Received<T>() where T : IMessage => Calls.Select(c => c.Request).OfType<T>();

    public override Task<Run> CreateRun(CreateRunRequest request, ServerCallContext context)
    {
        Record(nameof(CreateRun), context, request);
        if (Reject(request) is { } refusal) throw refusal;
        var run = _byToken.GetOrAdd(request.ClientToken, _ => Store(FromRequest(request)));
        if (LoseAnswers > 0)
        {
            LoseAnswers--;
            throw new RpcException(new Status(StatusCode.Unavailable, "connection to the database lost"));
        }
        return Task.FromResult(run);
    }

    public override Task<PreviewRunResponse> PreviewRun(CreateRunRequest request, ServerCallContext context)
    {
        Record(nameof(PreviewRun), context, request);
        if (Reject(request) is { } refusal) throw refusal;
        return Task.FromResult(Preview);
    }

    public override Task<ListRunsResponse> ListRuns(ListRunsRequest request, ServerCallContext context)
    {
        Record(nameof(ListRuns), context, request);
        var response = new ListRunsResponse();
        response.Runs.AddRange(Runs.Values
            .Where(r => (request.Task.Length == 0 || r.Task == request.Task) && (request.Status == RunStatus.Unspecified || r.Status == request.Status))
            .OrderByDescending(r => r.CreatedAt?.ToDateTimeOffset())
            .Take(request.PageSize)
            .Select(r =>
            {
                var summary = r.Clone();
                summary.Invocations.Clear();
                return summary;
            }));
        return Task.FromResult(response);
    }

    public override Task<Run> GetRun(GetRunRequest request, ServerCallContext context)
    {
        Record(nameof(GetRun), context, request);
        return Task.FromResult(Find(request.Id));
    }

    public override Task<Run> CancelRun(CancelRunRequest request, ServerCallContext context)
    {
        Record(nameof(CancelRun), context, request);
        var run = Find(request.Id).Clone();
        if (request.AgentId.Length > 0 && run.Invocations.All(i => i.AgentId != request.AgentId))
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"run {request.Id} has no host '{request.AgentId}'"));
        }
        if (request.AgentId.Length == 0) run.Status = RunStatus.Cancelled;
        return Task.FromResult(run);
    }

    public override Task<Run> RetryRun(RetryRunRequest request, ServerCallContext context)
    {
        Record(nameof(RetryRun), context, request);
        var original = Find(request.Id);
        var retry = new CreateRunRequest { Task = original.Task, ClientToken = request.ClientToken };
        retry.Parameters.Add(original.Parameters);
        retry.Hosts.AddRange(original.Invocations.Where(i => !request.FailedOnly || i.State != InvocationState.Succeeded).Select(i => i.AgentId));
        var run = _byToken.GetOrAdd(request.ClientToken, _ => Store(FromRequest(retry)));
        run.RetryOf = original.Id;
        return Task.FromResult(run);
    }

    public override async Task WatchRun(GetRunRequest request, IServerStreamWriter<Run> responseStream, ServerCallContext context)
    {
        Record(nameof(WatchRun), context, request);
        var updates = WatchUpdates.TryGetValue(request.Id, out var scripted) ? scripted : [Find(request.Id)];
        foreach (var update in updates) await responseStream.WriteAsync(update, context.CancellationToken);
        UpdatesSent.TrySetResult();
        if (!HoldWatchOpen) return;
        try
        {
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The client stopped watching.
        }
    }

    public override async Task GetInvocationOutput(GetInvocationOutputRequest request, IServerStreamWriter<OutputChunk> responseStream, ServerCallContext context)
    {
        Record(nameof(GetInvocationOutput), context, request);
        if (!Outputs.TryGetValue((request.RunId, request.AgentId), out var output))
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"no output for host '{request.AgentId}' in run {request.RunId}"));
        }
        const int chunk = 32 * 1024;
        for (var offset = 0; offset < output.Length; offset += chunk)
        {
            await responseStream.WriteAsync(new OutputChunk { Data = ByteString.CopyFrom(output, offset, Math.Min(chunk, output.Length - offset)) }, context.CancellationToken);
        }
    }

    private Run Find(string id) =>
        Runs.TryGetValue(id, out var run) ? run : throw new RpcException(new Status(StatusCode.NotFound, $"run '{id}' does not exist"));

    private Run Store(Run run)
    {
        run.Id = $"r-{Interlocked.Increment(ref _created)}";
        Runs[run.Id] = run;
        return run;
    }

    private static Run FromRequest(CreateRunRequest request)
    {
        var run = new Run
        {
            Task = request.Task, MaxConcurrency = request.MaxConcurrency, MaxErrors = request.MaxErrors, Canary = request.Canary,
            DeliveryTimeout = request.DeliveryTimeout, ExecutionTimeout = request.ExecutionTimeout, DryRun = request.DryRun,
            ClientToken = request.ClientToken, Status = RunStatus.InProgress, CreatedAt = RunsFleet.At(TestFleet.Now),
            Hosts = { request.Hosts }, Tags = { request.Tags }, Parameters = { request.Parameters },
            Counts = new RunCounts { Total = request.Hosts.Count, Pending = request.Hosts.Count },
        };
        run.Invocations.AddRange(request.Hosts.Select(h => new Invocation { AgentId = h, Hostname = h, State = InvocationState.Pending }));
        return run;
    }

    private void Record<T>(string method, ServerCallContext context, T request) where T : IMessage, IDeepCloneable<T> =>
        Calls.Enqueue(new ReceivedRunsCall(method, context.RequestHeaders.GetValue("x-fleet-user"), request.Clone()));
}
