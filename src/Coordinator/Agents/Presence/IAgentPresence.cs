namespace Fleet.Coordinator.Agents.Presence;

/// <summary>Which agents are online and which replica holds each one's stream.</summary>
public sealed record PresenceEntry(string ReplicaId, string SessionId, DateTime LastHeartbeatUtc);

/// <summary>
/// Liveness of agent streams, shared by all replicas (Redis) or held in process (embedded).
/// An entry expires when no heartbeat refreshed it within the heartbeat timeout, so a replica that
/// dies without cleaning up cannot leave its agents "online".
/// </summary>
public interface IAgentPresence
{
    Task MarkOnlineAsync(string agentId, PresenceEntry entry, TimeSpan ttl, CancellationToken cancellationToken);

    /// <summary>Removes the entry only if it still belongs to this session (a newer stream may have replaced it).</summary>
    Task MarkOfflineAsync(string agentId, string sessionId, CancellationToken cancellationToken);

    /// <summary>Removes the entry whatever session holds it (agent removed).</summary>
    Task ForgetAsync(string agentId, CancellationToken cancellationToken);

    Task<IReadOnlyDictionary<string, PresenceEntry>> GetAsync(IReadOnlyCollection<string> agentIds, CancellationToken cancellationToken);
}
