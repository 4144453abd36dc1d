using System.Collections.Concurrent;
using System.Net;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Fleet.Cli.Tests.Metrics;

/// <summary>A real loopback gRPC server (Kestrel, plaintext HTTP/2) serving the Agents and Metrics services from memory.</summary>
public sealed class FakeMetricsCoordinator : IAsyncDisposable
{
    private readonly WebApplication _app;

    private FakeMetricsCoordinator(WebApplication app, Uri address, FakeAgentsService agents, FakeMetricsService metrics)
    {
        _app = app;
        Address = address;
        Agents = agents;
        Metrics = metrics;
    }

    public Uri Address { get; }

    public string Url => Address.GetLeftPart(UriPartial.Authority);

    public FakeAgentsService Agents { get; }

    public FakeMetricsService Metrics { get; }

    public static async Task<FakeMetricsCoordinator> StartAsync(IEnumerable<Agent> agents)
    {
        var agentList = agents.ToList();
        for (var attempt = 1; ; attempt++)
        {
            var port = FreePort.Next();
            var agentsService = new FakeAgentsService(agentList);
            var metricsService = new FakeMetricsService();
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port, listen => listen.Protocols = HttpProtocols.Http2));
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(agentsService);
            builder.Services.AddSingleton(metricsService);
            var app = builder.Build();
            app.MapGrpcService<FakeAgentsService>();
            app.MapGrpcService<FakeMetricsService>();
            try
            {
                await app.StartAsync();
                return new FakeMetricsCoordinator(app, new Uri($"http://127.0.0.1:{port}"), agentsService, metricsService);
            }
            catch (IOException) when (attempt < 5)
            {
                await app.DisposeAsync();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
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
