using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using V1 = Fleet.Protocol.V1;

namespace Fleet.Coordinator.Agents;

/// <summary>Ops API for agents: gRPC on the gRPC port, REST under /api/v1/agents through JSON transcoding.</summary>
sealed partial class AgentsApi(
    IDbContextFactory<FleetDbContext> dbFactory,
    IAgentPresence presence,
    AgentRegistry registry,
    AgentDisconnector disconnector,
    Metrics.ILatestMetrics latest,
    ILogger<AgentsApi> logger) : Protocol.V1.Agents.AgentsBase
{
    public override async Task<ListAgentsResponse> ListAgents(ListAgentsRequest request, ServerCallContext context)
    {
        if (!System.Enum.IsDefined(request.Status))
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"status: '{request.Status}' is not a valid agent status"));
        await using var db = dbFactory.CreateDbContext();
        var records = await db.Agents.AsNoTracking().OrderBy(a => a.Hostname).ThenBy(a => a.Id).ToListAsync(context.CancellationToken);
        var online = await presence.GetAsync(records.Select(r => r.Id).ToList(), context.CancellationToken);
        var response = new ListAgentsResponse();
        foreach (var record in records)
        {
            var agent = ToMessage(record, online.GetValueOrDefault(record.Id));
            if (request.Status == AgentStatus.Unspecified || request.Status == agent.Status)
                response.Agents.Add(agent);
        }
        return response;
    }

    public override async Task<V1.Agent> GetAgent(GetAgentRequest request, ServerCallContext context)
    {
        ApiArguments.AgentId(request.Id, "id");
        await using var db = dbFactory.CreateDbContext();
        var record = await db.Agents.AsNoTracking().SingleOrDefaultAsync(a => a.Id == request.Id, context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"agent '{request.Id}' not found"));
        var online = await presence.GetAsync([record.Id], context.CancellationToken);
        return ToMessage(record, online.GetValueOrDefault(record.Id));
    }

    public override async Task<RemoveAgentResponse> RemoveAgent(RemoveAgentRequest request, ServerCallContext context)
    {
        ApiArguments.AgentId(request.Id, "id");
        var actor = context.Actor();
        var wasOnline = (await presence.GetAsync([request.Id], context.CancellationToken)).ContainsKey(request.Id);
        if (!await registry.RemoveAsync(request.Id, actor, wasOnline, context.CancellationToken))
            throw new RpcException(new Status(StatusCode.NotFound, $"agent '{request.Id}' not found"));
        await presence.ForgetAsync(request.Id, context.CancellationToken);
        await latest.ForgetAsync(request.Id, context.CancellationToken);
        await disconnector.DisconnectAsync(request.Id, context.CancellationToken);
        LogRemoved(request.Id, actor.ToString(), wasOnline);
        return new RemoveAgentResponse { Id = request.Id, Disconnected = wasOnline };
    }

    public const int DefaultEventLimit = 100, MaxEventLimit = 1000;

    /// <summary>GET /api/v1/agents/{agent_id}/events: the agent's stored events, newest first (optionally one kind).</summary>
    public override async Task<ListAgentEventsResponse> ListAgentEvents(ListAgentEventsRequest request, ServerCallContext context)
    {
        ApiArguments.AgentId(request.AgentId, "agent_id");
        if (request.Kind.Length > 128) throw ApiArguments.Invalid($"kind: {request.Kind.Length} characters; at most 128");
        if (request.Limit < 0 || request.Limit > MaxEventLimit)
            throw ApiArguments.Invalid($"limit: {request.Limit} is out of range (1-{MaxEventLimit}; 0 means {DefaultEventLimit})");
        var limit = request.Limit == 0 ? DefaultEventLimit : request.Limit;
        await using var db = dbFactory.CreateDbContext();
        var events = db.AgentEvents.AsNoTracking().Where(e => e.AgentId == request.AgentId);
        if (request.Kind.Length > 0) events = events.Where(e => e.Kind == request.Kind);
        var rows = await events.OrderByDescending(e => e.Time).ThenByDescending(e => e.Id).Take(limit).ToListAsync(context.CancellationToken);
        var response = new ListAgentEventsResponse();
        foreach (var row in rows)
        {
            var e = new StoredAgentEvent
            {
                AgentId = row.AgentId,
                Time = Timestamp.FromDateTime(DateTime.SpecifyKind(row.Time, DateTimeKind.Utc)),
                Kind = row.Kind,
                Message = row.Message,
            };
            if (System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, string>>(row.AttributesJson) is { } attributes)
                e.Attributes.Add(attributes);
            response.Events.Add(e);
        }
        return response;
    }

    static V1.Agent ToMessage(AgentRecord record, PresenceEntry? online)
    {
        var agent = new V1.Agent
        {
            Id = record.Id,
            Hostname = record.Hostname,
            MachineId = record.MachineId,
            Os = record.Os,
            Kernel = record.Kernel,
            AgentVersion = record.AgentVersion,
            ProtocolVersion = (uint)record.ProtocolVersion,
            Status = online is null ? AgentStatus.Offline : AgentStatus.Online,
            FirstSeen = Timestamp.FromDateTime(record.FirstSeen),
            LastSeen = Timestamp.FromDateTime(online is not null && online.LastHeartbeatUtc > record.LastSeen ? online.LastHeartbeatUtc : record.LastSeen),
            Replica = online?.ReplicaId ?? "",
        };
        agent.Tags.Add(AgentRegistry.Tags(record));
        agent.Tasks.AddRange(AgentRegistry.Tasks(record));
        return agent;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Agent {AgentId} removed by {Actor} (was online: {WasOnline})")]
    partial void LogRemoved(string agentId, string actor, bool wasOnline);
}
