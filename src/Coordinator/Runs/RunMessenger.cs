using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Hosting;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Fleet.Coordinator.Runs;

/// <summary>
/// Delivers Dispatch and CancelInvocation to agents on whichever replica holds their stream: directly when this
/// replica holds it, otherwise through the holder's Redis channel "{prefix}runs:replica:{replicaId}" (presence says
/// which replica). A message to an agent that is gone is dropped: it is re-sent when the agent reconnects.
/// Also carries "wake the engine" between replicas, so the leader reacts at once to runs and results seen elsewhere.
/// </summary>
public sealed partial class RunMessenger(
    AgentSessions sessions,
    RunSignal signal,
    IOptions<RedisOptions> redisOptions,
    IOptions<FleetOptions> fleetOptions,
    ILogger<RunMessenger> logger,
    IConnectionMultiplexer? redis = null)
{
    static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(2);
    long lastWakePublished;

    RedisChannel ReplicaChannel(string replicaId) => RedisChannel.Literal($"{redisOptions.Value.KeyPrefix}runs:replica:{replicaId}");
    RedisChannel WakeChannel => RedisChannel.Literal($"{redisOptions.Value.KeyPrefix}runs:wake");

    /// <summary>Sends each message to its agent; returns how many went to a stream (here or to the holding replica).</summary>
    public async Task<int> SendAsync(IReadOnlyList<(string AgentId, CoordinatorMessage Message)> messages, IReadOnlyDictionary<string, PresenceEntry> presence, CancellationToken cancellationToken)
    {
        var sent = 0;
        var remote = new Dictionary<string, List<(string, CoordinatorMessage)>>();
        foreach (var (agentId, message) in messages)
        {
            if (sessions.TryGet(agentId, out var session))
            {
                if (await SendLocalAsync(session, message, cancellationToken)) sent++;
            }
            else if (redis is not null && presence.TryGetValue(agentId, out var entry) && entry.ReplicaId != fleetOptions.Value.EffectiveReplicaId)
            {
                if (!remote.TryGetValue(entry.ReplicaId, out var list)) remote[entry.ReplicaId] = list = [];
                list.Add((agentId, message));
                sent++;
            }
        }
        foreach (var (replica, list) in remote)
            await redis!.GetSubscriber().PublishAsync(ReplicaChannel(replica), Encode(list));
        return sent;
    }

    /// <summary>Wakes the dispatch engine here and (at most every 100 ms) on the other replicas.</summary>
    public void Wake()
    {
        signal.Wake();
        if (redis is null) return;
        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref lastWakePublished);
        if (now - last < 100 || Interlocked.CompareExchange(ref lastWakePublished, now, last) != last) return;
        _ = redis.GetSubscriber().PublishAsync(WakeChannel, fleetOptions.Value.EffectiveReplicaId, CommandFlags.FireAndForget);
    }

    void WakeHere() => signal.Wake();

    static async Task<bool> SendLocalAsync(AgentSession session, CoordinatorMessage message, CancellationToken cancellationToken)
    {
        if (session.Outgoing.Writer.TryWrite(message)) return true;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, session.Closed);
        timeout.CancelAfter(SendTimeout);
        try
        {
            await session.SendAsync(message, timeout.Token);
            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false; // a stuck or closing stream: the agent gets it again when it reconnects
        }
        catch (System.Threading.Channels.ChannelClosedException)
        {
            return false;
        }
    }

    static byte[] Encode(List<(string AgentId, CoordinatorMessage Message)> list)
    {
        using var buffer = new MemoryStream();
        var output = new CodedOutputStream(buffer);
        foreach (var (agentId, message) in list)
        {
            output.WriteString(agentId);
            output.WriteBytes(message.ToByteString());
        }
        output.Flush();
        return buffer.ToArray();
    }

    async Task DeliverAsync(byte[] payload)
    {
        var input = new CodedInputStream(payload);
        while (!input.IsAtEnd)
        {
            var agentId = input.ReadString();
            var message = CoordinatorMessage.Parser.ParseFrom(input.ReadBytes());
            if (sessions.TryGet(agentId, out var session))
                await SendLocalAsync(session, message, CancellationToken.None);
        }
    }

    /// <summary>Listens on this replica's channel (messages for the agents it holds) and on the wake channel.</summary>
    internal sealed class Listener(RunMessenger messenger, IConnectionMultiplexer redis, IOptions<FleetOptions> fleetOptions) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            var subscriber = redis.GetSubscriber();
            // A queue, not a callback: delivery may wait on a busy stream without holding Redis's reader thread.
            var queue = await subscriber.SubscribeAsync(messenger.ReplicaChannel(fleetOptions.Value.EffectiveReplicaId));
            queue.OnMessage(async message =>
            {
                try { await messenger.DeliverAsync((byte[])message.Message!); }
                catch (InvalidProtocolBufferException ex) { messenger.LogBadMessage(ex); }
            });
            await subscriber.SubscribeAsync(messenger.WakeChannel, (_, _) => messenger.WakeHere());
        }

        public async Task StopAsync(CancellationToken cancellationToken)
        {
            var subscriber = redis.GetSubscriber();
            await subscriber.UnsubscribeAsync(messenger.ReplicaChannel(fleetOptions.Value.EffectiveReplicaId));
            await subscriber.UnsubscribeAsync(messenger.WakeChannel);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dropped a malformed run message from another replica")]
    partial void LogBadMessage(Exception exception);
}

/// <summary>Wakes the dispatch engine before its next interval (a new run, a result, an agent that connected).</summary>
public sealed class RunSignal : IDisposable
{
    readonly SemaphoreSlim signal = new(0, 1);

    public void Wake()
    {
        try { signal.Release(); }
        catch (SemaphoreFullException) { } // already signalled
    }

    public Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken) => signal.WaitAsync(timeout, cancellationToken);

    public void Dispose() => signal.Dispose();
}
