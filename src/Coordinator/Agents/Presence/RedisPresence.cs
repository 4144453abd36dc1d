using System.Globalization;
using Fleet.Coordinator.Hosting;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Fleet.Coordinator.Agents.Presence;

/// <summary>
/// Presence in Redis: one key per agent, "{prefix}presence:{agentId}" = "replica|session|unix-ms",
/// with a TTL of the heartbeat timeout. Every replica sees every agent; a dead replica's entries expire.
/// </summary>
sealed class RedisPresence(IConnectionMultiplexer redis, IOptions<RedisOptions> options) : IAgentPresence
{
    // Delete only if the value still names our session.
    const string CompareAndDelete = """
        local v = redis.call('GET', KEYS[1])
        if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
        return 0
        """;

    RedisKey Key(string agentId) => $"{options.Value.KeyPrefix}presence:{agentId}";

    public Task MarkOnlineAsync(string agentId, PresenceEntry entry, TimeSpan ttl, CancellationToken cancellationToken) =>
        redis.GetDatabase().StringSetAsync(Key(agentId), Encode(entry), ttl);

    public Task MarkOfflineAsync(string agentId, string sessionId, CancellationToken cancellationToken) =>
        redis.GetDatabase().ScriptEvaluateAsync(CompareAndDelete, [Key(agentId)], [$"|{sessionId}|"]);

    public Task ForgetAsync(string agentId, CancellationToken cancellationToken) =>
        redis.GetDatabase().KeyDeleteAsync(Key(agentId));

    public async Task<IReadOnlyDictionary<string, PresenceEntry>> GetAsync(IReadOnlyCollection<string> agentIds, CancellationToken cancellationToken)
    {
        var result = new Dictionary<string, PresenceEntry>(agentIds.Count);
        if (agentIds.Count == 0) return result;
        var ids = agentIds.ToArray();
        // MGET in slices so one call never carries an unbounded number of keys.
        for (var start = 0; start < ids.Length; start += 1000)
        {
            var slice = ids.AsMemory(start, Math.Min(1000, ids.Length - start));
            var keys = new RedisKey[slice.Length];
            for (var i = 0; i < keys.Length; i++) keys[i] = Key(slice.Span[i]);
            var values = await redis.GetDatabase().StringGetAsync(keys);
            for (var i = 0; i < values.Length; i++)
                if (Decode(values[i]) is { } entry)
                    result[slice.Span[i]] = entry;
        }
        return result;
    }

    static string Encode(PresenceEntry e) =>
        string.Create(CultureInfo.InvariantCulture, $"{e.ReplicaId}|{e.SessionId}|{new DateTimeOffset(e.LastHeartbeatUtc).ToUnixTimeMilliseconds()}");

    static PresenceEntry? Decode(RedisValue value)
    {
        if (value.IsNullOrEmpty) return null;
        var parts = value.ToString().Split('|');
        if (parts.Length != 3 || !long.TryParse(parts[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms)) return null;
        return new PresenceEntry(parts[0], parts[1], DateTimeOffset.FromUnixTimeMilliseconds(ms).UtcDateTime);
    }
}
