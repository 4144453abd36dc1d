using System.Collections.Concurrent;
using System.Threading.Channels;
using Fleet.Protocol.V1;

namespace Fleet.Coordinator.Agents;

/// <summary>One live agent stream held by this replica.</summary>
public sealed class AgentSession(string agentId, string sessionId, IReadOnlyDictionary<string, string>? tags = null) : IDisposable
{
    readonly CancellationTokenSource closed = new();

    public string AgentId { get; } = agentId;
    public string SessionId { get; } = sessionId;

    /// <summary>The tags the agent sent in its hello.</summary>
    public IReadOnlyDictionary<string, string> Tags { get; } = tags ?? new Dictionary<string, string>();

    /// <summary>Messages to the agent; one writer task drains it onto the response stream.</summary>
    public Channel<CoordinatorMessage> Outgoing { get; } = Channel.CreateBounded<CoordinatorMessage>(
        new BoundedChannelOptions(10_000) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });

    public CancellationToken Closed => closed.Token;

    public void Close()
    {
        try { closed.Cancel(); }
        catch (ObjectDisposedException) { }
    }

    public ValueTask SendAsync(CoordinatorMessage message, CancellationToken cancellationToken) =>
        Outgoing.Writer.WriteAsync(message, cancellationToken);

    public void Dispose() => closed.Dispose();
}

/// <summary>The agent streams this replica holds, by agent id.</summary>
public sealed class AgentSessions
{
    readonly ConcurrentDictionary<string, AgentSession> sessions = new();

    public int Count => sessions.Count;

    /// <summary>A snapshot of the streams held now.</summary>
    public IReadOnlyCollection<AgentSession> All => [.. sessions.Values];

    /// <summary>Registers a new stream; an older stream of the same agent on this replica is closed (newest wins).</summary>
    public void Add(AgentSession session)
    {
        sessions.AddOrUpdate(session.AgentId, session, (_, old) =>
        {
            old.Close();
            return session;
        });
    }

    public void Remove(AgentSession session) =>
        sessions.TryRemove(new KeyValuePair<string, AgentSession>(session.AgentId, session));

    public bool TryGet(string agentId, out AgentSession session) => sessions.TryGetValue(agentId, out session!);

    /// <summary>Closes this replica's stream of the agent, if it holds one.</summary>
    public bool Close(string agentId)
    {
        if (!sessions.TryGetValue(agentId, out var session)) return false;
        session.Close();
        return true;
    }
}
