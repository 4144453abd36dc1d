using Fleet.Coordinator.Hosting;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Fleet.Coordinator.Agents;

/// <summary>
/// Closes an agent's stream on whichever replica holds it: directly in embedded mode, through a Redis
/// channel that every replica listens on when Redis is configured.
/// </summary>
public sealed class AgentDisconnector(AgentSessions sessions, IOptions<RedisOptions> redisOptions, IConnectionMultiplexer? redis = null)
{
    RedisChannel Channel => RedisChannel.Literal($"{redisOptions.Value.KeyPrefix}agents:disconnect");

    public async Task DisconnectAsync(string agentId, CancellationToken cancellationToken)
    {
        sessions.Close(agentId);
        if (redis is not null)
            await redis.GetSubscriber().PublishAsync(Channel, agentId);
    }

    /// <summary>Listens for disconnect requests from other replicas.</summary>
    internal sealed class Listener(AgentDisconnector disconnector, AgentSessions sessions, IConnectionMultiplexer redis) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) =>
            redis.GetSubscriber().SubscribeAsync(disconnector.Channel, (_, agentId) => sessions.Close(agentId.ToString()));

        public Task StopAsync(CancellationToken cancellationToken) =>
            redis.GetSubscriber().UnsubscribeAsync(disconnector.Channel);
    }
}
