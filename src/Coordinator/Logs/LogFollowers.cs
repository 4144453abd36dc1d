using System.Collections.Concurrent;
using System.Threading.Channels;
using Fleet.Coordinator.Hosting;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Fleet.Coordinator.Logs;

/// <summary>Hands newly stored entries to the live followers (FollowLogs) of every replica.</summary>
public interface ILogFollowers
{
    Task PublishAsync(IReadOnlyList<LogRecord> records, CancellationToken cancellationToken);

    /// <summary>A follower: every entry stored from now on until it is disposed.</summary>
    LogSubscription Subscribe();
}

/// <summary>
/// One follower's queue. Bounded: a follower that cannot keep up loses the oldest entries (they stay searchable)
/// rather than holding memory or slowing ingest.
/// </summary>
public sealed class LogSubscription(Action<LogSubscription> unsubscribe) : IDisposable
{
    const int Capacity = 10_000;

    readonly Channel<LogRecord> channel = Channel.CreateBounded<LogRecord>(new BoundedChannelOptions(Capacity)
    {
        FullMode = BoundedChannelFullMode.DropOldest,
        SingleReader = true,
    });

    public ChannelReader<LogRecord> Reader => channel.Reader;

    internal void Offer(LogRecord record) => channel.Writer.TryWrite(record);

    public void Dispose()
    {
        channel.Writer.TryComplete();
        unsubscribe(this);
    }
}

/// <summary>The followers of this process.</summary>
public class InProcessLogFollowers : ILogFollowers
{
    readonly ConcurrentDictionary<LogSubscription, byte> subscriptions = new();

    public virtual Task PublishAsync(IReadOnlyList<LogRecord> records, CancellationToken cancellationToken)
    {
        Deliver(records);
        return Task.CompletedTask;
    }

    protected void Deliver(IEnumerable<LogRecord> records)
    {
        if (subscriptions.IsEmpty) return;
        foreach (var record in records)
            foreach (var subscription in subscriptions.Keys)
                subscription.Offer(record);
    }

    public LogSubscription Subscribe()
    {
        var subscription = new LogSubscription(s => subscriptions.TryRemove(s, out _));
        subscriptions[subscription] = 0;
        return subscription;
    }
}

/// <summary>
/// With Redis: entries go through a channel every replica listens on, so a follower connected to one replica sees what
/// another stored. Local followers are served from the channel too (never twice).
/// </summary>
public sealed class RedisLogFollowers(IConnectionMultiplexer redis, IOptions<RedisOptions> options) : InProcessLogFollowers
{
    RedisChannel Channel => RedisChannel.Literal($"{options.Value.KeyPrefix}logs:stored");

    public override async Task PublishAsync(IReadOnlyList<LogRecord> records, CancellationToken cancellationToken)
    {
        var message = new SearchLogsResponse();
        message.Entries.AddRange(records);
        await redis.GetSubscriber().PublishAsync(Channel, message.ToByteArray());
    }

    void OnMessage(RedisValue value) => Deliver(SearchLogsResponse.Parser.ParseFrom((byte[])value!).Entries);

    internal sealed class Listener(RedisLogFollowers followers, IConnectionMultiplexer redis) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) =>
            redis.GetSubscriber().SubscribeAsync(followers.Channel, (_, value) => followers.OnMessage(value));

        public Task StopAsync(CancellationToken cancellationToken) =>
            redis.GetSubscriber().UnsubscribeAsync(followers.Channel);
    }
}
