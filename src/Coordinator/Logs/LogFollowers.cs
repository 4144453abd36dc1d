using System.Buffers.Binary;
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
public sealed class LogSubscription(DateTime since, Action<LogSubscription> unsubscribe) : IDisposable
{
    /// <summary>Entries published before this (still in flight through Redis when the follow began) are not delivered.</summary>
    internal DateTime Since { get; } = since;

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
public class InProcessLogFollowers(TimeProvider time) : ILogFollowers
{
    protected TimeProvider Time { get; } = time;

    readonly ConcurrentDictionary<LogSubscription, byte> subscriptions = new();

    public virtual Task PublishAsync(IReadOnlyList<LogRecord> records, CancellationToken cancellationToken)
    {
        Deliver(records, Time.GetUtcNow().UtcDateTime);
        return Task.CompletedTask;
    }

    protected void Deliver(IEnumerable<LogRecord> records, DateTime publishedAt)
    {
        if (subscriptions.IsEmpty) return;
        var current = subscriptions.Keys.Where(s => s.Since <= publishedAt).ToList();
        foreach (var record in records)
            foreach (var subscription in current)
                subscription.Offer(record);
    }

    public LogSubscription Subscribe()
    {
        var subscription = new LogSubscription(Time.GetUtcNow().UtcDateTime, s => subscriptions.TryRemove(s, out _));
        subscriptions[subscription] = 0;
        return subscription;
    }
}

/// <summary>
/// With Redis: entries go through a channel every replica listens on, so a follower connected to one replica sees what
/// another stored. Local followers are served from the channel too (never twice).
/// </summary>
public sealed class RedisLogFollowers(IConnectionMultiplexer redis, IOptions<RedisOptions> options, TimeProvider time) : InProcessLogFollowers(time)
{
    RedisChannel Channel => RedisChannel.Literal($"{options.Value.KeyPrefix}logs:stored");

    public override async Task PublishAsync(IReadOnlyList<LogRecord> records, CancellationToken cancellationToken)
    {
        // The publish time (8 bytes, UTC ticks) and the entries.
        var message = new SearchLogsResponse();
        message.Entries.AddRange(records);
        var payload = new byte[8 + message.CalculateSize()];
        BinaryPrimitives.WriteInt64LittleEndian(payload, Time.GetUtcNow().UtcTicks);
        message.WriteTo(payload.AsSpan(8));
        await redis.GetSubscriber().PublishAsync(Channel, payload);
    }

    void OnMessage(RedisValue value)
    {
        var payload = (byte[])value!;
        var publishedAt = new DateTime(BinaryPrimitives.ReadInt64LittleEndian(payload), DateTimeKind.Utc);
        Deliver(SearchLogsResponse.Parser.ParseFrom(payload.AsSpan(8)).Entries, publishedAt);
    }

    internal sealed class Listener(RedisLogFollowers followers, IConnectionMultiplexer redis) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) =>
            redis.GetSubscriber().SubscribeAsync(followers.Channel, (_, value) => followers.OnMessage(value));

        public Task StopAsync(CancellationToken cancellationToken) =>
            redis.GetSubscriber().UnsubscribeAsync(followers.Channel);
    }
}
