using System.Collections.Concurrent;
using System.Globalization;
using System.Threading.Channels;
using Fleet.Protocol.V1;
using Grpc.Core;

namespace Fleet.Cli.Tests.Logs;

/// <summary>The Logs service from memory.</summary>
public sealed class FakeLogsCoordinator : FakeGrpcServer
{
    private FakeLogsCoordinator() => Logs = Serve(new FakeLogsService());

    public FakeLogsService Logs { get; }

    public static async Task<FakeLogsCoordinator> StartAsync()
    {
        var coordinator = new FakeLogsCoordinator();
        await coordinator.ListenAsync();
        return coordinator;
    }
}

/// <summary>
/// SearchLogs pages through <see cref="Stored"/> (kept newest first, filters ignored; the coordinator's tests cover
/// them); FollowLogs streams whatever the test writes to <see cref="Live"/> and ends when the test completes it.
/// </summary>
public sealed class FakeLogsService : Fleet.Protocol.V1.Logs.LogsBase
{
    public List<LogRecord> Stored { get; } = [];

    public ConcurrentQueue<SearchLogsRequest> Searches { get; } = new();

    public ConcurrentQueue<FollowLogsRequest> Follows { get; } = new();

    public Channel<LogRecord> Live { get; } = Channel.CreateUnbounded<LogRecord>();

    public TaskCompletionSource FollowStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public RpcException? Failure { get; set; }

    public override Task<SearchLogsResponse> SearchLogs(SearchLogsRequest request, ServerCallContext context)
    {
        Searches.Enqueue(request.Clone());
        if (Failure is not null) throw Failure;
        var start = request.PageToken.Length == 0 ? 0 : int.Parse(request.PageToken, CultureInfo.InvariantCulture);
        var limit = request.Limit == 0 ? 100 : request.Limit;
        var response = new SearchLogsResponse();
        response.Entries.AddRange(Stored.Skip(start).Take(limit).Select(e => e.Clone()));
        if (start + limit < Stored.Count) response.NextPageToken = (start + limit).ToString(CultureInfo.InvariantCulture);
        return Task.FromResult(response);
    }

    public override async Task FollowLogs(FollowLogsRequest request, IServerStreamWriter<LogRecord> responseStream, ServerCallContext context)
    {
        Follows.Enqueue(request.Clone());
        await context.WriteResponseHeadersAsync([]);
        FollowStarted.TrySetResult();
        try
        {
            await foreach (var record in Live.Reader.ReadAllAsync(context.CancellationToken))
                await responseStream.WriteAsync(record, context.CancellationToken);
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested) { }
    }
}
