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

namespace Fleet.Cli.Tests;

/// <summary>A real loopback gRPC server (Kestrel, plaintext HTTP/2) implementing the ops API over an in-memory list.</summary>
public sealed class FakeCoordinator : IAsyncDisposable
{
    private readonly WebApplication _app;

    private FakeCoordinator(WebApplication app, Uri address, FakeAgentsService service)
    {
        _app = app;
        Address = address;
        Service = service;
    }

    public Uri Address { get; }

    /// <summary>The address as an operator would type it (no trailing slash).</summary>
    public string Url => Address.GetLeftPart(UriPartial.Authority);

    public FakeAgentsService Service { get; }

    public static async Task<FakeCoordinator> StartAsync(IEnumerable<Agent> agents, HttpProtocols protocols = HttpProtocols.Http2, bool grpc = true)
    {
        for (var attempt = 1; ; attempt++)
        {
            var port = FreePort.Next();
            var service = new FakeAgentsService(agents);
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port, listen => listen.Protocols = protocols));
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(service);
            var app = builder.Build();
            if (grpc) app.MapGrpcService<FakeAgentsService>();
            try
            {
                await app.StartAsync();
                return new FakeCoordinator(app, new Uri($"http://127.0.0.1:{port}"), service);
            }
            catch (IOException) when (attempt < 5)
            {
                // Someone took the free port between probing and binding; try another.
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

public sealed record ReceivedCall(string Method, string? User, DateTime Deadline, ListAgentsRequest? ListRequest);

public sealed class FakeAgentsService(IEnumerable<Agent> agents) : Agents.AgentsBase
{
    private readonly ConcurrentDictionary<string, Agent> _agents = new(agents.Select(a => KeyValuePair.Create(a.Id, a.Clone())));

    public ConcurrentQueue<ReceivedCall> Calls { get; } = new();

    public IReadOnlyCollection<string> Ids => _agents.Keys.ToList();

    /// <summary>Ids for which GetAgent answers PermissionDenied, to exercise other status codes.</summary>
    public const string ForbiddenId = "forbidden";

    public override Task<ListAgentsResponse> ListAgents(ListAgentsRequest request, ServerCallContext context)
    {
        Record(nameof(ListAgents), context, request);
        var response = new ListAgentsResponse();
        // Deliberately unsorted: sorting is the CLI's job.
        response.Agents.AddRange(_agents.Values
            .Where(a => request.Status == AgentStatus.Unspecified || a.Status == request.Status)
            .OrderByDescending(a => a.Id, StringComparer.Ordinal));
        return Task.FromResult(response);
    }

    public override Task<Agent> GetAgent(GetAgentRequest request, ServerCallContext context)
    {
        Record(nameof(GetAgent), context);
        if (request.Id == ForbiddenId) throw new RpcException(new Status(StatusCode.PermissionDenied, "operator 'mallory' may not read agents"));
        return _agents.TryGetValue(request.Id, out var agent)
            ? Task.FromResult(agent)
            : throw new RpcException(new Status(StatusCode.NotFound, $"agent '{request.Id}' does not exist"));
    }

    public override Task<RemoveAgentResponse> RemoveAgent(RemoveAgentRequest request, ServerCallContext context)
    {
        Record(nameof(RemoveAgent), context);
        return _agents.TryRemove(request.Id, out var agent)
            ? Task.FromResult(new RemoveAgentResponse { Id = agent.Id, Disconnected = agent.Status == AgentStatus.Online })
            : throw new RpcException(new Status(StatusCode.NotFound, $"agent '{request.Id}' does not exist"));
    }

    private void Record(string method, ServerCallContext context, ListAgentsRequest? list = null) =>
        Calls.Enqueue(new ReceivedCall(method, context.RequestHeaders.GetValue("x-fleet-user"), context.Deadline, list));
}
