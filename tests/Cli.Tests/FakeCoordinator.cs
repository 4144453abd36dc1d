using System.Collections.Concurrent;
using Fleet.Protocol.V1;
using Grpc.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Fleet.Cli.Tests;

/// <summary>The ops API's Agents service over an in-memory list.</summary>
public sealed class FakeCoordinator : FakeGrpcServer
{
    private FakeCoordinator(IEnumerable<Agent> agents) => Service = Serve(new FakeAgentsService(agents));

    public FakeAgentsService Service { get; }

    public static async Task<FakeCoordinator> StartAsync(IEnumerable<Agent> agents, HttpProtocols protocols = HttpProtocols.Http2, bool grpc = true)
    {
        var coordinator = new FakeCoordinator(agents);
        await coordinator.ListenAsync(protocols, grpc);
        return coordinator;
    }
}

public sealed record ReceivedCall(string Method, string? User, DateTime Deadline, ListAgentsRequest? ListRequest);

public sealed class FakeAgentsService(IEnumerable<Agent> agents) : Fleet.Protocol.V1.Agents.AgentsBase
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
