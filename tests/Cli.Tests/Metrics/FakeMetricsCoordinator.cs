using System.Collections.Concurrent;
using Fleet.Protocol.V1;
using Grpc.Core;

namespace Fleet.Cli.Tests.Metrics;

/// <summary>The Agents and Metrics services from memory.</summary>
public sealed class FakeMetricsCoordinator : FakeGrpcServer
{
    private FakeMetricsCoordinator(IEnumerable<Agent> agents)
    {
        Agents = Serve(new FakeAgentsService(agents));
        Metrics = Serve(new FakeMetricsService());
    }

    public FakeAgentsService Agents { get; }

    public FakeMetricsService Metrics { get; }

    public static async Task<FakeMetricsCoordinator> StartAsync(IEnumerable<Agent> agents)
    {
        var coordinator = new FakeMetricsCoordinator(agents);
        await coordinator.ListenAsync();
        return coordinator;
    }
}

/// <summary>Answers with whatever the test put in <see cref="Latest"/> and <see cref="History"/>, and keeps every request it received.</summary>
public sealed class FakeMetricsService : Fleet.Protocol.V1.Metrics.MetricsBase
{
    private volatile GetLatestMetricsResponse _latest = new();

    /// <summary>The fleet overview; GetLatestMetrics applies the request's name filter like the coordinator does (probes are always included).</summary>
    public GetLatestMetricsResponse Latest
    {
        get => _latest;
        set => _latest = value;
    }

    /// <summary>Series per (agent id, metric name); QueryMetrics returns them as they are, whatever the window.</summary>
    public ConcurrentDictionary<(string AgentId, string Name), Series[]> History { get; } = new();

    public ConcurrentQueue<GetLatestMetricsRequest> LatestRequests { get; } = new();

    public ConcurrentQueue<QueryMetricsRequest> QueryRequests { get; } = new();

    public override Task<GetLatestMetricsResponse> GetLatestMetrics(GetLatestMetricsRequest request, ServerCallContext context)
    {
        LatestRequests.Enqueue(request.Clone());
        var response = Latest.Clone();
        if (request.Names.Count > 0)
        {
            foreach (var host in response.Hosts)
            {
                var kept = host.Samples.Where(s => request.Names.Contains(s.Name)).ToList();
                host.Samples.Clear();
                host.Samples.AddRange(kept);
            }
        }
        return Task.FromResult(response);
    }

    public override Task<QueryMetricsResponse> QueryMetrics(QueryMetricsRequest request, ServerCallContext context)
    {
        QueryRequests.Enqueue(request.Clone());
        var response = new QueryMetricsResponse { AgentId = request.AgentId, Name = request.Name };
        if (History.TryGetValue((request.AgentId, request.Name), out var series)) response.Series.AddRange(series.Select(s => s.Clone()));
        return Task.FromResult(response);
    }
}
