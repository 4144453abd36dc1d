using System.Net.Sockets;
using Fleet.Agent.Configuration;
using Fleet.Agent.Identity;
using Fleet.Agent.Outbox;
using Fleet.Agent.Tasks;
using Fleet.Protocol;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;

namespace Fleet.Agent.Transport;

public enum ConnectionState { Starting, Connecting, Connected, Disconnected, Stopped }

/// <summary>
/// Holds the one stream to the coordinator: hello, heartbeats, outbox batches out; welcome and acks in.
/// Reconnects forever with jittered exponential backoff and logs each state change once, not once per retry.
/// </summary>
public sealed partial class CoordinatorConnection(
    AgentOptions options,
    AgentIdentity identity,
    DurableOutbox outbox,
    CentralConfig central,
    TimeProvider time,
    ILogger<CoordinatorConnection> logger,
    Func<HttpMessageHandler>? handlerFactory = null,
    TaskRuntime? tasks = null) : BackgroundService
{
    readonly Backoff backoff = new(options.ReconnectInitialDelay, options.ReconnectMaxDelay);
    string? lastProblem;
    long oversizedRecords;

    public ConnectionState State { get; private set; } = ConnectionState.Starting;

    /// <summary>The replica that holds the current stream (from the welcome).</summary>
    public string? CoordinatorId { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var channel = GrpcChannel.ForAddress(options.Coordinator, new GrpcChannelOptions
        {
            HttpHandler = handlerFactory?.Invoke() ?? new SocketsHttpHandler
            {
                ConnectTimeout = TimeSpan.FromSeconds(10),
                KeepAlivePingDelay = TimeSpan.FromSeconds(20),
                KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
                KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
                PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
                EnableMultipleHttp2Connections = false,
            },
            MaxReceiveMessageSize = 16 * 1024 * 1024,
        });
        var client = channel.CreateCallInvoker();
        SetState(ConnectionState.Connecting, null);

        while (!stoppingToken.IsCancellationRequested)
        {
            string problem;
            try
            {
                await RunStreamAsync(client, stoppingToken);
                problem = "the coordinator closed the stream";
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (RpcException ex)
            {
                problem = Describe(ex);
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException or SocketException or InvalidOperationException)
            {
                problem = $"{ex.GetType().Name}: {ex.Message}";
            }

            var delay = backoff.Next();
            SetState(ConnectionState.Disconnected, problem);
            try { await Task.Delay(delay, time, stoppingToken); }
            catch (OperationCanceledException) { break; }
        }
        SetState(ConnectionState.Stopped, null);
    }

    async Task RunStreamAsync(CallInvoker client, CancellationToken stoppingToken)
    {
        var headers = new Metadata { { Wire.ProtocolVersionHeader, Wire.ProtocolVersion.ToString(System.Globalization.CultureInfo.InvariantCulture) } };
        using var streamCts = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        // Not the generated client: its request type is AgentMessage, and outbox records go out as they are (OutgoingMessage).
        using var call = client.AsyncDuplexStreamingCall(OutgoingMessage.Connect, null, new CallOptions(headers, cancellationToken: streamCts.Token));
        var writeLock = new SemaphoreSlim(1, 1);

        await call.RequestStream.WriteAsync(OutgoingMessage.From(new AgentMessage { Hello = Hello() }), streamCts.Token);
        if (!await call.ResponseStream.MoveNext(streamCts.Token))
            throw new IOException("the coordinator closed the stream before its welcome");
        var first = call.ResponseStream.Current;
        if (first.BodyCase != CoordinatorMessage.BodyOneofCase.Welcome)
            throw new IOException($"expected a welcome, got '{first.BodyCase}'");
        var welcome = first.Welcome;
        CoordinatorId = welcome.CoordinatorId;
        if (welcome.Config is { } config) central.Apply(config);
        var heartbeat = welcome.Config?.HeartbeatInterval?.ToTimeSpan() is { } hb && hb > TimeSpan.Zero ? hb : options.HeartbeatInterval;
        backoff.Reset();
        SetState(ConnectionState.Connected, null);

        RewindOutbox();
        var tasks = new[]
        {
            ReceiveLoopAsync(call.ResponseStream, streamCts.Token),
            HeartbeatLoopAsync(call.RequestStream, writeLock, heartbeat, streamCts.Token),
            SendLoopAsync(call.RequestStream, writeLock, streamCts.Token),
        };
        var finished = await Task.WhenAny(tasks);
        await streamCts.CancelAsync();
        try { await Task.WhenAll(tasks); }
        catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested && finished.IsCompletedSuccessfully) { }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutting down: say goodbye so the coordinator marks us offline at once.
            try { await call.RequestStream.CompleteAsync(); } catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException) { }
            throw;
        }
        await finished; // surfaces the error that ended the stream
    }

    async Task ReceiveLoopAsync(IAsyncStreamReader<CoordinatorMessage> responses, CancellationToken cancellationToken)
    {
        while (await responses.MoveNext(cancellationToken))
        {
            var message = responses.Current;
            switch (message.BodyCase)
            {
                case CoordinatorMessage.BodyOneofCase.Ack:
                    foreach (var key in message.Ack.Keys)
                        outbox.Acknowledge(new OutboxKey(key.Epoch, key.Counter));
                    break;
                case CoordinatorMessage.BodyOneofCase.Reject:
                    LogRejected(message.Reject.Key?.Epoch ?? 0, message.Reject.Key?.Counter ?? 0, message.Reject.Reason);
                    if (message.Reject.Key is { } k) outbox.Reject(new OutboxKey(k.Epoch, k.Counter), message.Reject.Reason);
                    break;
                case CoordinatorMessage.BodyOneofCase.Config:
                    central.Apply(message.Config);
                    break;
                case CoordinatorMessage.BodyOneofCase.Welcome:
                    break;
                case CoordinatorMessage.BodyOneofCase.Dispatch:
                    if (tasks is null) LogNoTaskRuntime(message.Dispatch.InvocationId);
                    else await tasks.DispatchAsync(message.Dispatch, cancellationToken);
                    break;
                case CoordinatorMessage.BodyOneofCase.Cancel:
                    tasks?.Cancel(message.Cancel.InvocationId, message.Cancel.Reason);
                    break;
                default:
                    LogUnknownMessage(message.BodyCase.ToString());
                    break;
            }
        }
    }

    async Task HeartbeatLoopAsync(IClientStreamWriter<OutgoingMessage> requests, SemaphoreSlim writeLock, TimeSpan interval, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(interval, time);
        while (await timer.WaitForNextTickAsync(cancellationToken))
        {
            var heartbeat = new Heartbeat
            {
                SentAt = Timestamp.FromDateTimeOffset(time.GetUtcNow()),
                OutboxPendingRecords = (ulong)outbox.PendingRecords,
                OutboxPendingBytes = (ulong)outbox.PendingBytes,
                OutboxDroppedRecords = (ulong)outbox.DroppedRecords,
            };
            await WriteAsync(requests, writeLock, OutgoingMessage.From(new AgentMessage { Heartbeat = heartbeat }), cancellationToken);
        }
    }

    async Task SendLoopAsync(IClientStreamWriter<OutgoingMessage> requests, SemaphoreSlim writeLock, CancellationToken cancellationToken)
    {
        while (true)
        {
            var message = await NextBatchMessageAsync(cancellationToken);
            await WriteAsync(requests, writeLock, message, cancellationToken);
            // Serialized into gRPC's buffer by now. Not on a failed or cancelled write, which might still read it:
            // that buffer is left to the GC.
            message.Release();
        }
    }

    /// <summary>Outbox records rejected locally because their message would exceed <see cref="AgentOptions.MaxMessageBytes"/>.</summary>
    public long OversizedRecords => Interlocked.Read(ref oversizedRecords);

    // How many of the next records to parse in full before sending them as they are (see RunStreamAsync).
    long verifyNext;

    /// <summary>The next outbox record as a message to send. A record that cannot be sent (unreadable, or larger than
    /// <see cref="AgentOptions.MaxMessageBytes"/>) is rejected in the outbox and skipped: resending it after every
    /// reconnect would hold back every record behind it forever.</summary>
    /// <remarks>
    /// A record goes out as it is (<see cref="OutgoingMessage.ForRecord"/>) after a structural check of its top-level
    /// fields (<see cref="BatchRecord.IsSendableAsIs"/>); its size is known from its length, so no parse and no second
    /// serialization. Only a record that fails the check is parsed, as before, to set its key or reject it.
    /// </remarks>
    internal async ValueTask<OutgoingMessage> NextBatchMessageAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var record = await outbox.ReadNextPooledAsync(cancellationToken);
            OutgoingMessage message;
            Batch.PayloadOneofCase payload;
            if (BatchRecord.IsSendableAsIs(record.Payload.Span, out payload) && (Interlocked.Decrement(ref verifyNext) < 0 || Parses(record.Payload.Span)))
                message = OutgoingMessage.ForRecord(record);
            else
            {
                Batch batch;
                try { batch = Batch.Parser.ParseFrom(record.Payload.Span); }
                catch (Google.Protobuf.InvalidProtocolBufferException ex)
                {
                    // Can only happen if the disk returned garbage that still passed the checksum; never send it.
                    DurableOutbox.Release(record);
                    outbox.Reject(record.Key, $"unreadable payload: {ex.Message}");
                    continue;
                }
                DurableOutbox.Release(record); // the parsed batch holds copies
                batch.Key = new BatchKey { Epoch = record.Key.Epoch, Counter = record.Key.Counter };
                payload = batch.PayloadCase;
                message = OutgoingMessage.From(new AgentMessage { Batch = batch });
            }
            if (message.Length > options.MaxMessageBytes)
            {
                Interlocked.Increment(ref oversizedRecords);
                LogOversized(record.Key.Epoch, record.Key.Counter, payload.ToString(), message.Length, options.MaxMessageBytes);
                outbox.Reject(record.Key, $"message of {message.Length} bytes exceeds the {options.MaxMessageBytes}-byte limit");
                message.Release();
                continue;
            }
            return message;
        }
    }

    /// <summary>
    /// Sends the unacknowledged records again from the oldest. They were perhaps what broke the last stream (a record the
    /// coordinator cannot parse fails the whole stream), so they are parsed in full before they go: a bad one is
    /// rejected, not resent forever. Records after them go as they are.
    /// </summary>
    internal void RewindOutbox()
    {
        outbox.Rewind();
        Interlocked.Exchange(ref verifyNext, outbox.PendingRecords);
    }

    static bool Parses(ReadOnlySpan<byte> record)
    {
        try { Batch.Parser.ParseFrom(record); return true; }
        catch (Google.Protobuf.InvalidProtocolBufferException) { return false; } // rejected by the parse path below
    }

    static async Task WriteAsync(IClientStreamWriter<OutgoingMessage> requests, SemaphoreSlim writeLock, OutgoingMessage message, CancellationToken cancellationToken)
    {
        await writeLock.WaitAsync(cancellationToken);
        try { await requests.WriteAsync(message, cancellationToken); }
        finally { writeLock.Release(); }
    }

    Hello Hello()
    {
        var hello = new Hello
        {
            AgentId = identity.AgentId,
            Hostname = identity.Hostname,
            MachineId = identity.MachineId,
            Os = identity.Os,
            Kernel = identity.Kernel,
            AgentVersion = identity.Version,
            ProtocolVersion = Wire.ProtocolVersion,
            Epoch = outbox.Epoch,
            StartedAt = Timestamp.FromDateTimeOffset(time.GetUtcNow()),
        };
        hello.Tags.Add(options.Tags);
        if (tasks is not null) hello.Tasks.Add(tasks.Catalog);
        return hello;
    }

    string Describe(RpcException ex) => ex.StatusCode switch
    {
        StatusCode.Unavailable => $"cannot reach the coordinator at {options.Coordinator} ({Inner(ex)})",
        StatusCode.FailedPrecondition => $"the coordinator at {options.Coordinator} refused this agent: {ex.Status.Detail}",
        StatusCode.InvalidArgument => $"the coordinator at {options.Coordinator} refused this agent's message: {ex.Status.Detail}",
        _ => $"stream to {options.Coordinator} failed: {ex.StatusCode}: {ex.Status.Detail}",
    };

    static string Inner(RpcException ex)
    {
        Exception? e = ex.Status.DebugException ?? ex.InnerException;
        while (e?.InnerException is not null) e = e.InnerException;
        return e?.Message ?? ex.Status.Detail;
    }

    void SetState(ConnectionState state, string? problem)
    {
        var changed = state != State;
        var newProblem = problem is not null && problem != lastProblem;
        State = state;
        if (state == ConnectionState.Connected) lastProblem = null;
        if (!changed && !newProblem) return;
        switch (state)
        {
            case ConnectionState.Connecting: LogConnecting(options.Coordinator, identity.AgentId); break;
            case ConnectionState.Connected: LogConnected(options.Coordinator, CoordinatorId); break;
            case ConnectionState.Disconnected:
                lastProblem = problem;
                LogDisconnected(problem, options.ReconnectMaxDelay.TotalSeconds);
                break;
            case ConnectionState.Stopped: LogStopped(); break;
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Connecting to the coordinator at {Coordinator} as agent {AgentId}")]
    partial void LogConnecting(Uri coordinator, string agentId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Connected to the coordinator at {Coordinator} (replica {Replica})")]
    partial void LogConnected(Uri coordinator, string? replica);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Not connected: {Problem}; retrying with backoff (at most {MaxSeconds} s apart), logging again only when this changes")]
    partial void LogDisconnected(string? problem, double maxSeconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Connection stopped")]
    partial void LogStopped();

    [LoggerMessage(Level = LogLevel.Warning, Message = "The coordinator rejected batch {Epoch}/{Counter}: {Reason}")]
    partial void LogRejected(ulong epoch, ulong counter, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox record {Epoch}/{Counter} ({Payload}) not sent: its message of {Bytes} bytes exceeds the {MaxBytes}-byte limit; dropped")]
    partial void LogOversized(ulong epoch, ulong counter, string payload, int bytes, int maxBytes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dispatch of invocation {InvocationId} ignored: this agent runs no tasks")]
    partial void LogNoTaskRuntime(string invocationId);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Ignoring unknown coordinator message {Body}")]
    partial void LogUnknownMessage(string body);
}
