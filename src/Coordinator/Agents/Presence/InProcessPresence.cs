using System.Collections.Concurrent;

namespace Fleet.Coordinator.Agents.Presence;

/// <summary>Embedded mode: presence in this process, expiring by the injected clock.</summary>
sealed class InProcessPresence(TimeProvider time) : IAgentPresence
{
    readonly ConcurrentDictionary<string, (PresenceEntry Entry, DateTimeOffset Expires)> entries = new();

    public Task MarkOnlineAsync(string agentId, PresenceEntry entry, TimeSpan ttl, CancellationToken cancellationToken)
    {
        entries[agentId] = (entry, time.GetUtcNow() + ttl);
        return Task.CompletedTask;
    }

    public Task MarkOfflineAsync(string agentId, string sessionId, CancellationToken cancellationToken)
    {
        if (entries.TryGetValue(agentId, out var current) && current.Entry.SessionId == sessionId)
            entries.TryRemove(new KeyValuePair<string, (PresenceEntry, DateTimeOffset)>(agentId, current));
        return Task.CompletedTask;
    }

    public Task ForgetAsync(string agentId, CancellationToken cancellationToken)
    {
        entries.TryRemove(agentId, out _);
        return Task.CompletedTask;
    }

    public Task<IReadOnlyDictionary<string, PresenceEntry>> GetAsync(IReadOnlyCollection<string> agentIds, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var result = new Dictionary<string, PresenceEntry>(agentIds.Count);
        foreach (var id in agentIds)
            if (entries.TryGetValue(id, out var e) && e.Expires > now)
                result[id] = e.Entry;
        return Task.FromResult<IReadOnlyDictionary<string, PresenceEntry>>(result);
    }
}
