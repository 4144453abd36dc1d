using System.Threading.Channels;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using V1TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Coordinator.Tests.Runs;

/// <summary>A protocol-level agent with a task catalog: receives Dispatch/CancelInvocation, answers with TaskUpdates batches.</summary>
public sealed class FakeAgent : IAsyncDisposable
{
    public const string Secret = "hunter2-very-secret";

    readonly AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call;
    readonly Channel<CoordinatorMessage> work = Channel.CreateUnbounded<CoordinatorMessage>();
    readonly Channel<Ack> acks = Channel.CreateUnbounded<Ack>();
    readonly Task reader;
    static long counter = DateTime.UtcNow.Ticks;

    public string Id { get; }
    public Welcome Welcome { get; private set; } = new();

    FakeAgent(string id, AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call)
    {
        Id = id;
        this.call = call;
        reader = Task.Run(ReadAsync);
    }

    public static TaskDescriptor Probe() => new()
    {
        Name = "probe",
        Description = "checks a target",
        DefaultTimeout = Duration.FromTimeSpan(TimeSpan.FromMinutes(1)),
        Parameters =
        {
            new ParameterSchema { Name = "target", Type = ParameterSchema.Types.Type.String, Required = true, Pattern = "[a-z.]+" },
            new ParameterSchema { Name = "count", Type = ParameterSchema.Types.Type.Int },
            new ParameterSchema { Name = "verbose", Type = ParameterSchema.Types.Type.Bool },
            new ParameterSchema { Name = "window", Type = ParameterSchema.Types.Type.Duration },
            new ParameterSchema { Name = "password", Type = ParameterSchema.Types.Type.String, Secret = true },
        },
    };

    public static TaskDescriptor Wipe() => new() { Name = "wipe", Description = "deletes caches", Destructive = true };

    public static string NewId(string prefix = "agent") => $"{prefix}-{Guid.NewGuid().ToString("N")[..10]}";

    public static async Task<FakeAgent> ConnectAsync(CoordinatorFactory coordinator, string id, string? hostname = null, IDictionary<string, string>? tags = null)
    {
        var headers = new Metadata { { Wire.ProtocolVersionHeader, Wire.ProtocolVersion.ToString(System.Globalization.CultureInfo.InvariantCulture) } };
        var agent = new FakeAgent(id, new AgentGateway.AgentGatewayClient(coordinator.Channel()).Connect(headers));
        var hello = RawAgentStream.Hello(id, hostname ?? id + ".example", epoch: 1);
        if (tags is not null) { hello.Tags.Clear(); hello.Tags.Add(tags); }
        hello.Tasks.Add(Probe());
        hello.Tasks.Add(Wipe());
        await agent.call.RequestStream.WriteAsync(new AgentMessage { Hello = hello }).DefaultTimeout();
        var first = await agent.work.Reader.ReadAsync().AsTask().DefaultTimeout();
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Welcome, first.BodyCase);
        agent.Welcome = first.Welcome;
        return agent;
    }

    async Task ReadAsync()
    {
        try
        {
            await foreach (var message in call.ResponseStream.ReadAllAsync())
            {
                if (message.BodyCase == CoordinatorMessage.BodyOneofCase.Ack) await acks.Writer.WriteAsync(message.Ack);
                else await work.Writer.WriteAsync(message);
            }
        }
        catch (RpcException) { }
        catch (OperationCanceledException) { }
        finally
        {
            work.Writer.TryComplete();
            acks.Writer.TryComplete();
        }
    }

    public async Task<CoordinatorMessage> NextAsync(CoordinatorMessage.BodyOneofCase kind)
    {
        while (true)
        {
            var message = await work.Reader.ReadAsync().AsTask().DefaultTimeout();
            if (message.BodyCase == kind) return message;
        }
    }

    public async Task<Dispatch> NextDispatchAsync() => (await NextAsync(CoordinatorMessage.BodyOneofCase.Dispatch)).Dispatch;

    /// <summary>Whether a message of this kind is already waiting (no waiting: for "nothing arrived" checks after an outcome).</summary>
    public bool HasPending(CoordinatorMessage.BodyOneofCase kind)
    {
        var found = false;
        var kept = new List<CoordinatorMessage>();
        while (work.Reader.TryRead(out var m))
        {
            found |= m.BodyCase == kind;
            kept.Add(m);
        }
        foreach (var m in kept) work.Writer.TryWrite(m);
        return found;
    }

    public static Batch Batch(params TaskUpdate[] updates) => new()
    {
        Key = new BatchKey { Epoch = 1, Counter = (ulong)Interlocked.Increment(ref counter) },
        CreatedAt = Timestamp.FromDateTime(DateTime.UtcNow),
        Tasks = new TaskUpdates { Updates = { updates } },
    };

    /// <summary>Sends the batch and waits for its ack (stored).</summary>
    public async Task SendAsync(Batch batch)
    {
        await call.RequestStream.WriteAsync(new AgentMessage { Batch = batch }).DefaultTimeout();
        while (true)
        {
            var ack = await acks.Reader.ReadAsync().AsTask().DefaultTimeout();
            if (ack.Keys.Any(k => k.Counter == batch.Key.Counter)) return;
        }
    }

    public Task SendAsync(params TaskUpdate[] updates) => SendAsync(Batch(updates));

    public static TaskUpdate Started(string invocationId) =>
        new() { InvocationId = invocationId, Time = Timestamp.FromDateTime(DateTime.UtcNow), Started = new TaskStarted() };

    public static TaskUpdate Output(string invocationId, long offset, byte[] data) =>
        new() { InvocationId = invocationId, Time = Timestamp.FromDateTime(DateTime.UtcNow), Output = new TaskOutput { Offset = (ulong)offset, Data = ByteString.CopyFrom(data) } };

    public static TaskUpdate Finished(string invocationId, V1TaskStatus status, long outputBytes = 0, string error = "") =>
        new()
        {
            InvocationId = invocationId,
            Time = Timestamp.FromDateTime(DateTime.UtcNow),
            Finished = new TaskFinished
            {
                Status = status,
                ExitCode = status == V1TaskStatus.Succeeded ? 0 : 1,
                Summary = status == V1TaskStatus.Succeeded ? "all good" : "broken",
                Error = error,
                FailureKind = status == V1TaskStatus.Succeeded ? "" : "task",
                OutputBytes = (ulong)outputBytes,
                Figures = { ["checked"] = 3 },
            },
        };

    /// <summary>Runs the next dispatched invocation to the given outcome.</summary>
    public async Task<Dispatch> RunNextAsync(V1TaskStatus status)
    {
        var dispatch = await NextDispatchAsync();
        await SendAsync(Started(dispatch.InvocationId), Finished(dispatch.InvocationId, status, error: status == V1TaskStatus.Succeeded ? "" : "it broke"));
        return dispatch;
    }

    /// <summary>Ends the stream the way an agent shutting down does.</summary>
    public async Task CloseAsync()
    {
        await call.RequestStream.CompleteAsync().DefaultTimeout();
        await reader.DefaultTimeout();
    }

    public async ValueTask DisposeAsync()
    {
        call.Dispose();
        try { await reader.WaitAsync(TimeSpan.FromSeconds(5)); }
        catch (TimeoutException) { }
    }
}
