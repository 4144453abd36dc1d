using TaskStatus = Fleet.Protocol.V1.TaskStatus;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Bench.LoadGen;

/// <summary>
/// One simulated agent: a Connect stream that says Hello, waits for Welcome, heartbeats, optionally sends
/// event batches, and reconnects with capped, jittered backoff when the stream fails.
/// Sessions are sequential; within a session one send loop and one receive loop run, and every write goes
/// through <see cref="WriteAsync"/> (gRPC allows one pending write per call).
/// </summary>
public sealed class SimAgent : IDisposable
{
    static readonly TimeSpan InitialBackoff = TimeSpan.FromMilliseconds(250);
    static readonly TimeSpan WriteFailureGrace = TimeSpan.FromSeconds(5);

    readonly AgentGateway.AgentGatewayClient _client;
    readonly LoadGenOptions _options;
    readonly Stats _stats;
    readonly Hello _hello;
    readonly ulong _epoch;
    readonly Metadata _headers = new() { { "fleet-protocol-version", "1" } };
    readonly SemaphoreSlim _writeLock = new(1, 1);

    // Unacknowledged batches by counter, resent after a reconnect (what a real agent's outbox does). Guarded by lock(_pending).
    readonly Dictionary<ulong, PendingBatch> _pending = [];
    ulong _oldestPending = 1;
    long _pendingBytes;
    ulong _nextCounter = 1;
    ulong _droppedRecords;
    bool _everWelcomed;

    sealed class PendingBatch(Batch batch, int size)
    {
        public Batch Batch { get; } = batch;
        public int Size { get; } = size;
        public long SentAt { get; set; }
    }

    public SimAgent(int index, AgentGateway.AgentGatewayClient client, LoadGenOptions options, Stats stats)
    {
        _client = client;
        _options = options;
        _stats = stats;
        _epoch = (ulong)Random.Shared.NextInt64(1, long.MaxValue);
        var number = (index + 1).ToString("D5", System.Globalization.CultureInfo.InvariantCulture);
        var agentId = $"sim-{options.RunId}-{number}";
        _hello = new Hello
        {
            AgentId = agentId,
            Hostname = $"sim-{number}",
            MachineId = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(agentId)), 0, 16),
            Os = "linux",
            Kernel = "6.1.0-sim",
            AgentVersion = "loadgen",
            ProtocolVersion = (uint)ProtocolVersion._1,
            Epoch = _epoch,
            StartedAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow),
            Tags =
            {
                ["role"] = "sim",
                ["shard"] = (index % 10).ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["loadgen-run"] = options.RunId,
            },
            Tasks =
            {
                new TaskDescriptor
                {
                    Name = "health.check",
                    Description = "Simulated health check; always succeeds.",
                    DefaultTimeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(30)),
                    MaxTimeout = Duration.FromTimeSpan(TimeSpan.FromMinutes(5)),
                },
                new TaskDescriptor
                {
                    Name = "sim.sleep",
                    Description = "Simulated task with one parameter; the load generator answers immediately.",
                    DefaultTimeout = Duration.FromTimeSpan(TimeSpan.FromMinutes(1)),
                    MaxTimeout = Duration.FromTimeSpan(TimeSpan.FromMinutes(10)),
                    Parameters =
                    {
                        new ParameterSchema { Name = "duration", Type = ParameterSchema.Types.Type.Duration, DefaultValue = "1s", Description = "How long to pretend to work." },
                    },
                },
            },
        };
    }

    /// <summary>Runs sessions until <paramref name="runToken"/> is cancelled, then closes the current stream cleanly.</summary>
    public async Task RunAsync(CancellationToken runToken)
    {
        var failures = 0;
        while (!runToken.IsCancellationRequested)
        {
            var welcomed = false;
            try
            {
                welcomed = await RunSessionAsync(runToken);
                if (runToken.IsCancellationRequested)
                {
                    return;
                }
                _stats.Error("ServerClosed", "the coordinator ended the stream with status OK");
            }
            catch (Exception) when (runToken.IsCancellationRequested)
            {
                return;
            }
            catch (SessionFailure e)
            {
                welcomed = e.Welcomed;
                _stats.Error(e.Kind, e.Message);
            }
            catch (RpcException e)
            {
                _stats.Error(e.StatusCode.ToString(), Describe(e));
            }
            catch (Exception e)
            {
                _stats.Error(e.GetType().Name, e.Message);
            }

            // Capped exponential backoff with full jitter; a session that got as far as Welcome resets it.
            failures = welcomed ? 1 : failures + 1;
            var cap = Math.Min(_options.MaxBackoff.TotalMilliseconds, InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(failures - 1, 20)));
            var delay = TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * cap);
            await Task.Delay(delay, runToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>One Connect stream. Returns whether Welcome was received; throws on failure.</summary>
    async Task<bool> RunSessionAsync(CancellationToken runToken)
    {
        using var sessionCts = new CancellationTokenSource();
        // On shutdown the session gets DrainTimeout to close cleanly; after that whatever is left is aborted.
        using var drainDeadline = runToken.Register(() => sessionCts.CancelAfter(_options.DrainTimeout));

        _stats.ConnectAttempt();
        var startedAt = Stopwatch.GetTimestamp();
        using var call = _client.Connect(_headers, cancellationToken: sessionCts.Token);

        // Hello, then wait for Welcome (bounded by --welcome-timeout; a shutdown aborts the wait at once).
        using (var welcomeCts = CancellationTokenSource.CreateLinkedTokenSource(sessionCts.Token, runToken))
        {
            welcomeCts.CancelAfter(_options.WelcomeTimeout);
            try
            {
                await WriteAsync(call, new AgentMessage { Hello = _hello }, welcomeCts.Token);
                if (!await call.ResponseStream.MoveNext(welcomeCts.Token))
                {
                    throw new SessionFailure("ClosedBeforeWelcome", "the coordinator ended the stream before sending Welcome", welcomed: false);
                }
            }
            catch (Exception e) when (e is not SessionFailure && welcomeCts.IsCancellationRequested && !runToken.IsCancellationRequested && !sessionCts.IsCancellationRequested)
            {
                throw new SessionFailure("WelcomeTimeout", $"no Welcome within {_options.WelcomeTimeout.TotalSeconds:0.#}s", welcomed: false);
            }
            var first = call.ResponseStream.Current;
            if (first.BodyCase != CoordinatorMessage.BodyOneofCase.Welcome)
            {
                throw new SessionFailure("NoWelcome", $"first coordinator message was {first.BodyCase}, not Welcome", welcomed: false);
            }
        }
        _stats.WelcomeLatency.Record(Stopwatch.GetElapsedTime(startedAt));
        _stats.Welcomed(firstForAgent: !_everWelcomed);
        _everWelcomed = true;

        using var stopSending = CancellationTokenSource.CreateLinkedTokenSource(runToken);
        var receive = ReceiveLoopAsync(call, stopSending, sessionCts.Token);
        try
        {
            Exception? sendError = null;
            try
            {
                await ResendPendingAsync(call);
                await SendLoopAsync(call, stopSending.Token);
            }
            catch (Exception e)
            {
                sendError = e;
            }

            if (runToken.IsCancellationRequested)
            {
                _stats.Closed(clean: sendError is null && await CloseCleanlyAsync(call, receive, sessionCts.Token));
                return true;
            }

            // A failed write usually means the call already failed: prefer the receive side's status, which says why.
            if (sendError is not null && await Task.WhenAny(receive, Task.Delay(WriteFailureGrace, CancellationToken.None)) != receive)
            {
                throw new SessionFailure("WriteFailed", sendError.Message, welcomed: true);
            }
            try
            {
                await receive;
            }
            catch (RpcException e)
            {
                throw new SessionFailure(e.StatusCode.ToString(), Describe(e), welcomed: true);
            }
            catch (Exception e)
            {
                throw new SessionFailure(e.GetType().Name, e.Message, welcomed: true);
            }
            if (sendError is not null)
            {
                throw new SessionFailure("WriteFailed", sendError.Message, welcomed: true);
            }
            return true; // the coordinator ended the call with OK
        }
        finally
        {
            if (!receive.IsCompleted)
            {
                await sessionCts.CancelAsync();
                await receive.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
            _stats.Disconnected();
        }
    }

    /// <summary>Half-closes the request stream and waits for the coordinator to end the call (bounded by the drain deadline).</summary>
    async Task<bool> CloseCleanlyAsync(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call, Task receive, CancellationToken token)
    {
        try
        {
            await _writeLock.WaitAsync(token);
            try
            {
                await call.RequestStream.CompleteAsync();
            }
            finally
            {
                _writeLock.Release();
            }
            await receive;
            return true;
        }
        catch (Exception)
        {
            return false; // drain deadline passed, or the call failed while closing
        }
    }

    async Task SendLoopAsync(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call, CancellationToken stop)
    {
        // Jittered first sends so thousands of agents don't tick in the same millisecond.
        var clock = Stopwatch.StartNew();
        var heartbeatEvery = _options.Heartbeat;
        var batchEvery = _options.BatchInterval;
        var nextHeartbeat = heartbeatEvery * Random.Shared.NextDouble();
        var nextBatch = batchEvery > TimeSpan.Zero ? batchEvery * Random.Shared.NextDouble() : TimeSpan.MaxValue;

        while (!stop.IsCancellationRequested)
        {
            var now = clock.Elapsed;
            if (now >= nextHeartbeat)
            {
                // Not cancelled by `stop`: cancelling a gRPC write cancels the whole call, and shutdown wants a clean close.
                await WriteAsync(call, new AgentMessage { Heartbeat = NewHeartbeat() }, CancellationToken.None);
                _stats.HeartbeatSent();
                nextHeartbeat = Next(nextHeartbeat, heartbeatEvery, now);
            }
            if (now >= nextBatch)
            {
                await SendNewBatchAsync(call);
                nextBatch = Next(nextBatch, batchEvery, now);
            }

            // Later scenarios (metrics ingest, ...) add their own due times here.
            var wait = (nextHeartbeat < nextBatch ? nextHeartbeat : nextBatch) - clock.Elapsed;
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, stop).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        // Keep the schedule fixed-rate, but don't burst to catch up after a stall.
        static TimeSpan Next(TimeSpan due, TimeSpan every, TimeSpan now) => due + every > now ? due + every : now + every;
    }

    async Task ReceiveLoopAsync(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call, CancellationTokenSource stopSending, CancellationToken token)
    {
        await Task.Yield();
        try
        {
            while (await call.ResponseStream.MoveNext(token))
            {
                var message = call.ResponseStream.Current;
                switch (message.BodyCase)
                {
                    case CoordinatorMessage.BodyOneofCase.Ack:
                        OnAck(message.Ack);
                        break;

                    case CoordinatorMessage.BodyOneofCase.Reject:
                        OnReject(message.Reject);
                        break;

                    case CoordinatorMessage.BodyOneofCase.Welcome:
                        // Only the first message of a stream should be a Welcome.
                        _stats.UnexpectedMessage();
                        break;

                    // Work: a simulated agent answers at once; results travel as a Batch, so they get keys and acks like events do.
                    case CoordinatorMessage.BodyOneofCase.Dispatch:
                        await AnswerTaskAsync(call, message.Dispatch.InvocationId, TaskStatus.Succeeded);
                        break;

                    case CoordinatorMessage.BodyOneofCase.Cancel:
                        await AnswerTaskAsync(call, message.Cancel.InvocationId, TaskStatus.Cancelled);
                        break;

                    case CoordinatorMessage.BodyOneofCase.Config:
                        break;

                    case CoordinatorMessage.BodyOneofCase.None:
                    default:
                        _stats.UnexpectedMessage();
                        break;
                }
            }
        }
        finally
        {
            await stopSending.CancelAsync();
        }
    }

    /// <summary>A host's worth of samples: cpu per core, memory, disks, load, network, as the real collectors send.</summary>
    MetricBatch MetricSamples(DateTimeOffset now, ulong counter)
    {
        var ms = now.ToUnixTimeMilliseconds();
        var metrics = new MetricBatch();
        for (var i = 0; i < _options.Samples; i++)
        {
            var sample = new MetricSample { TimeUnixMs = ms, Value = (counter * 7 + (ulong)i) % 100 / 100.0 };
            switch (i % 6)
            {
                case 0: sample.Name = "cpu.usage"; sample.Labels["cpu"] = (i / 6).ToString(System.Globalization.CultureInfo.InvariantCulture); break;
                case 1: sample.Name = "memory.used_ratio"; sample.Labels["slot"] = (i / 6).ToString(System.Globalization.CultureInfo.InvariantCulture); break;
                case 2: sample.Name = "disk.used_ratio"; sample.Labels["mount"] = "/data" + (i / 6).ToString(System.Globalization.CultureInfo.InvariantCulture); break;
                case 3: sample.Name = "load.1m"; sample.Labels["slot"] = (i / 6).ToString(System.Globalization.CultureInfo.InvariantCulture); break;
                case 4: sample.Name = "network.rx_bytes_per_second"; sample.Labels["interface"] = "eth" + (i / 6).ToString(System.Globalization.CultureInfo.InvariantCulture); break;
                default: sample.Name = "network.tx_bytes_per_second"; sample.Labels["interface"] = "eth" + (i / 6).ToString(System.Globalization.CultureInfo.InvariantCulture); break;
            }
            metrics.Samples.Add(sample);
        }
        return metrics;
    }

    Task SendNewBatchAsync(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call) =>
        SendBatchAsync(call, (batch, now, counter) =>
        {
            if (_options.Samples > 0)
                batch.Metrics = MetricSamples(now, counter);
            else
                batch.Events = new AgentEvents
                {
                    Events =
                    {
                        new AgentEvent
                        {
                            Time = Timestamp.FromDateTimeOffset(now),
                            Kind = "sim.tick",
                            Message = "load generator tick",
                            Attributes = { ["seq"] = counter.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                        },
                    },
                };
        });

    /// <summary>A simulated task finishes at once: Started and Finished (Succeeded, or Cancelled) in one result batch.</summary>
    Task AnswerTaskAsync(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call, string invocationId, TaskStatus status)
    {
        _stats.TaskAnswered();
        return SendBatchAsync(call, (batch, now, _) =>
        {
            var time = Timestamp.FromDateTimeOffset(now);
            batch.Tasks = new TaskUpdates
            {
                Updates =
                {
                    new TaskUpdate { InvocationId = invocationId, Time = time, Started = new TaskStarted() },
                    new TaskUpdate
                    {
                        InvocationId = invocationId, Time = time,
                        Finished = new TaskFinished { Status = status, Summary = status == TaskStatus.Succeeded ? "simulated: ok" : "simulated: cancelled" },
                    },
                },
            };
        });
    }

    async Task SendBatchAsync(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call, Action<Batch, DateTimeOffset, ulong> fill)
    {
        var now = DateTimeOffset.UtcNow;
        PendingBatch pending;
        lock (_pending)
        {
            var counter = _nextCounter++;
            var batch = new Batch
            {
                Key = new BatchKey { Epoch = _epoch, Counter = counter },
                CreatedAt = Timestamp.FromDateTimeOffset(now),
            };
            fill(batch, now, counter);
            pending = new PendingBatch(batch, batch.CalculateSize()) { SentAt = Stopwatch.GetTimestamp() };
            _pending[counter] = pending;
            _pendingBytes += pending.Size;
            // Bounded outbox: drop the oldest unacknowledged batches (a real agent reports these as dropped).
            while (_pending.Count > _options.MaxPending)
            {
                while (!_pending.ContainsKey(_oldestPending))
                {
                    _oldestPending++;
                }
                _pendingBytes -= _pending[_oldestPending].Size;
                _pending.Remove(_oldestPending);
                _droppedRecords++;
                _stats.PendingDropped();
            }
        }
        // Counted when it enters the outbox: if this write fails the batch is resent on the next stream.
        _stats.BatchSent(resent: false);
        await WriteAsync(call, new AgentMessage { Batch = pending.Batch });
    }

    /// <summary>After a reconnect, resend what the previous stream left unacknowledged, oldest first.</summary>
    async Task ResendPendingAsync(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call)
    {
        List<PendingBatch> resend;
        lock (_pending)
        {
            resend = [.. _pending.OrderBy(p => p.Key).Select(p => p.Value)];
        }
        foreach (var p in resend)
        {
            p.SentAt = Stopwatch.GetTimestamp();
            await WriteAsync(call, new AgentMessage { Batch = p.Batch });
            _stats.BatchSent(resent: true);
        }
    }

    void OnAck(Ack ack)
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var key in ack.Keys)
        {
            PendingBatch? p = null;
            lock (_pending)
            {
                if (key.Epoch == _epoch && _pending.Remove(key.Counter, out p))
                {
                    _pendingBytes -= p.Size;
                }
            }
            if (p is null)
            {
                _stats.AckUnknownKey(); // duplicate ack, or for a batch already dropped
                continue;
            }
            _stats.Acked();
            _stats.AckLatency.Record(Stopwatch.GetElapsedTime(p.SentAt, now));
        }
    }

    void OnReject(Reject reject)
    {
        lock (_pending)
        {
            if (reject.Key is { } key && key.Epoch == _epoch && _pending.Remove(key.Counter, out var p))
            {
                _pendingBytes -= p.Size;
            }
        }
        _stats.Rejected();
    }

    Heartbeat NewHeartbeat()
    {
        lock (_pending)
        {
            return new Heartbeat
            {
                SentAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow),
                OutboxPendingRecords = (ulong)_pending.Count,
                OutboxPendingBytes = (ulong)_pendingBytes,
                OutboxDroppedRecords = _droppedRecords,
            };
        }
    }

    async Task WriteAsync(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call, AgentMessage message, CancellationToken token = default)
    {
        await _writeLock.WaitAsync(token);
        try
        {
            await call.RequestStream.WriteAsync(message, token);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public void Dispose() => _writeLock.Dispose();

    static string Describe(RpcException e) =>
        e.Status.DebugException is { } inner ? $"{e.Status.Detail} ({inner.GetType().Name}: {inner.Message})" : e.Status.Detail;

    sealed class SessionFailure(string kind, string message, bool welcomed) : Exception(message)
    {
        public string Kind { get; } = kind;
        public bool Welcomed { get; } = welcomed;
    }
}
