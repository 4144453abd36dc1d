using System.Globalization;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Hosting;
using Fleet.Protocol;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Agents;

/// <summary>
/// The agent stream: hello → welcome, then heartbeats and batches from the agent, acks (and later work) to it.
/// A stream that breaks a rule is closed with a status naming the problem; other streams are unaffected.
/// </summary>
sealed partial class AgentGatewayService(
    AgentRegistry registry,
    AgentSessions sessions,
    IAgentPresence presence,
    BatchIngest ingest,
    IEnumerable<IAgentConnectedHook> connectedHooks,
    IOptions<AgentsOptions> agentOptions,
    IOptions<FleetOptions> fleetOptions,
    TimeProvider time,
    IHostApplicationLifetime lifetime,
    ILogger<AgentGatewayService> logger) : AgentGateway.AgentGatewayBase
{
    public override async Task Connect(IAsyncStreamReader<AgentMessage> requestStream, IServerStreamWriter<CoordinatorMessage> responseStream, ServerCallContext context)
    {
        var options = agentOptions.Value;
        var replicaId = fleetOptions.Value.EffectiveReplicaId;
        CheckProtocolHeader(context);

        var hello = await ReadHelloAsync(requestStream, options, context.CancellationToken);
        var session = new AgentSession(hello.AgentId, Guid.NewGuid().ToString("N"), hello.Tags);
        using var _ = logger.BeginScope(new Dictionary<string, object> { ["AgentId"] = hello.AgentId, ["Peer"] = context.Peer });

        await registry.RegisterAsync(hello, replicaId, RemoteAddress(context), context.CancellationToken);
        await presence.MarkOnlineAsync(hello.AgentId, new PresenceEntry(replicaId, session.SessionId, time.GetUtcNow().UtcDateTime), options.HeartbeatTimeout, context.CancellationToken);
        sessions.Add(session);
        LogConnected(hello.AgentId, hello.Hostname, hello.AgentVersion, context.Peer);

        // Shutdown ends every stream at once (agents reconnect to another replica) instead of holding the process for the drain timeout.
        using var streamCts = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, session.Closed, lifetime.ApplicationStopping);
        var writer = WriteLoopAsync(session, responseStream, streamCts.Token);
        var reason = "stream ended";
        try
        {
            await session.SendAsync(new CoordinatorMessage { Welcome = Welcome(hello, replicaId, options) }, streamCts.Token);
            await RunConnectedHooksAsync(session, streamCts.Token);
            reason = await ReadLoopAsync(session, requestStream, options, replicaId, streamCts);
        }
        catch (OperationCanceledException) when (session.Closed.IsCancellationRequested)
        {
            reason = "replaced by a newer stream or removed";
        }
        catch (OperationCanceledException) when (lifetime.ApplicationStopping.IsCancellationRequested)
        {
            reason = "coordinator shutting down";
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            reason = "connection closed";
        }
        catch (IOException ex)
        {
            reason = $"connection lost: {ex.Message}";
        }
        finally
        {
            sessions.Remove(session);
            await streamCts.CancelAsync();
            try { await writer; } catch (OperationCanceledException) { } catch (InvalidOperationException) { } catch (IOException) { }
            try
            {
                await presence.MarkOfflineAsync(hello.AgentId, session.SessionId, CancellationToken.None);
                await registry.DisconnectedAsync(hello.AgentId, RemoteAddress(context), reason, CancellationToken.None);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // Presence expires on its own after the heartbeat timeout; never let cleanup mask the stream's outcome.
                LogCleanupFailed(hello.AgentId, ex);
            }
            LogDisconnected(hello.AgentId, reason);
            session.Dispose();
        }
    }

    async Task RunConnectedHooksAsync(AgentSession session, CancellationToken cancellationToken)
    {
        foreach (var hook in connectedHooks)
        {
            try { await hook.AgentConnectedAsync(session, cancellationToken); }
            catch (Exception ex) when (ex is System.Data.Common.DbException or InvalidOperationException or StackExchange.Redis.RedisException)
            {
                // The stream stays up: the hook's work is retried on the next connect (and by the feature's own loop).
                LogHookFailed(session.AgentId, ex);
            }
        }
    }

    static string RemoteAddress(ServerCallContext context) =>
        context.GetHttpContext().Connection.RemoteIpAddress?.ToString() ?? context.Peer;

    static void CheckProtocolHeader(ServerCallContext context)
    {
        var header = context.RequestHeaders.GetValue(Wire.ProtocolVersionHeader);
        if (header is null) return; // the hello carries it too
        if (!uint.TryParse(header, NumberStyles.None, CultureInfo.InvariantCulture, out var version) || version != Wire.ProtocolVersion)
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"protocol version '{header}' is not supported: this coordinator speaks version {Wire.ProtocolVersion}. Upgrade or downgrade the agent to a matching release."));
    }

    async Task<Hello> ReadHelloAsync(IAsyncStreamReader<AgentMessage> requestStream, AgentsOptions options, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(options.HelloTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        bool any;
        try { any = await requestStream.MoveNext(linked.Token); }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            throw new RpcException(new Status(StatusCode.DeadlineExceeded, $"no hello within {options.HelloTimeout.TotalSeconds:0.#} s"));
        }
        if (!any)
            throw new RpcException(new Status(StatusCode.InvalidArgument, "stream ended before the hello"));
        var first = requestStream.Current;
        if (first.BodyCase != AgentMessage.BodyOneofCase.Hello)
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"the first message must be a hello, got '{first.BodyCase}'"));
        var hello = first.Hello;
        if (!AgentIds.IsValid(hello.AgentId))
            throw new RpcException(new Status(StatusCode.InvalidArgument, AgentIds.Describe("hello.agent_id", hello.AgentId)));
        if (string.IsNullOrWhiteSpace(hello.Hostname) || hello.Hostname.Length > 253)
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"hello.hostname: '{hello.Hostname}' must be 1-253 characters"));
        if (hello.ProtocolVersion != Wire.ProtocolVersion)
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"hello.protocol_version: {hello.ProtocolVersion} is not supported: this coordinator speaks version {Wire.ProtocolVersion}. Upgrade or downgrade the agent to a matching release."));
        foreach (var tag in hello.Tags)
            if (tag.Key.Length is 0 or > 64 || tag.Value.Length > 256)
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"hello.tags: '{tag.Key}' must have a 1-64 character name and a value of at most 256 characters"));
        return hello;
    }

    static Welcome Welcome(Hello hello, string replicaId, AgentsOptions options) => new()
    {
        CoordinatorId = replicaId,
        Config = EffectiveConfig(hello.Tags, options),
    };

    /// <summary>The configuration an agent with these tags gets (welcome, and config updates).</summary>
    internal static AgentConfig EffectiveConfig(IReadOnlyDictionary<string, string> tags, AgentsOptions options) => new()
    {
        HeartbeatInterval = Duration.FromTimeSpan(options.HeartbeatInterval),
        HeartbeatTimeout = Duration.FromTimeSpan(options.HeartbeatTimeout),
        Tags = { tags.ToDictionary(t => t.Key, t => t.Value) },
        CollectorIntervals = { options.CollectorIntervalsFor(tags).ToDictionary(i => i.Key, i => Duration.FromTimeSpan(i.Value)) },
    };

    async Task<string> ReadLoopAsync(AgentSession session, IAsyncStreamReader<AgentMessage> requestStream, AgentsOptions options, string replicaId, CancellationTokenSource streamCts)
    {
        // Watchdog: a stream that sends nothing for the heartbeat timeout is closed (half-open connections, stuck agents).
        using var silence = new CancellationTokenSource(options.HeartbeatTimeout, time);
        using var readCts = CancellationTokenSource.CreateLinkedTokenSource(streamCts.Token, silence.Token);
        while (true)
        {
            bool any;
            try { any = await requestStream.MoveNext(readCts.Token); }
            catch (OperationCanceledException) when (silence.IsCancellationRequested)
            {
                return $"no heartbeat for {options.HeartbeatTimeout.TotalSeconds:0.#} s";
            }
            if (!any) return "agent closed the stream";
            silence.CancelAfter(options.HeartbeatTimeout);
            var message = requestStream.Current;
            switch (message.BodyCase)
            {
                case AgentMessage.BodyOneofCase.Heartbeat:
                    await presence.MarkOnlineAsync(session.AgentId, new PresenceEntry(replicaId, session.SessionId, time.GetUtcNow().UtcDateTime), options.HeartbeatTimeout, streamCts.Token);
                    break;
                case AgentMessage.BodyOneofCase.Batch:
                    // The agent is not silent while its batch is being stored: pause the watchdog, re-arm after.
                    silence.CancelAfter(Timeout.InfiniteTimeSpan);
                    await HandleBatchAsync(session, message.Batch, streamCts.Token);
                    silence.CancelAfter(options.HeartbeatTimeout);
                    break;
                case AgentMessage.BodyOneofCase.Hello:
                    throw new RpcException(new Status(StatusCode.InvalidArgument, "hello: sent twice on one stream"));
                default:
                    throw new RpcException(new Status(StatusCode.InvalidArgument, $"message: unknown or empty body '{message.BodyCase}'"));
            }
        }
    }

    async Task HandleBatchAsync(AgentSession session, Batch batch, CancellationToken cancellationToken)
    {
        var result = await ingest.StoreAsync(session.AgentId, batch, cancellationToken);
        if (result.Outcome == IngestOutcome.Rejected)
        {
            LogRejected(session.AgentId, result.Reason);
            await session.SendAsync(new CoordinatorMessage { Reject = new Reject { Key = batch.Key ?? new BatchKey(), Reason = result.Reason ?? "" } }, cancellationToken);
            return;
        }
        await session.SendAsync(new CoordinatorMessage { Ack = new Ack { Keys = { batch.Key } } }, cancellationToken);
    }

    static async Task WriteLoopAsync(AgentSession session, IServerStreamWriter<CoordinatorMessage> responseStream, CancellationToken cancellationToken)
    {
        await foreach (var message in session.Outgoing.Reader.ReadAllAsync(cancellationToken))
            await responseStream.WriteAsync(message, cancellationToken);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Agent {AgentId} ({Hostname}, {Version}) connected from {Peer}")]
    partial void LogConnected(string agentId, string hostname, string version, string peer);

    [LoggerMessage(Level = LogLevel.Information, Message = "Agent {AgentId} disconnected: {Reason}")]
    partial void LogDisconnected(string agentId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not record agent {AgentId} as offline; its presence expires by itself")]
    partial void LogCleanupFailed(string agentId, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A connect hook failed for agent {AgentId}")]
    partial void LogHookFailed(string agentId, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rejected a batch from agent {AgentId}: {Reason}")]
    partial void LogRejected(string agentId, string? reason);
}
