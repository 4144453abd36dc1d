using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Coordinator.Tests.Agents;

/// <summary>The agent stream and the agents API on real SQLite and real PostgreSQL.</summary>
public sealed class AgentStreamTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    public static TheoryData<Store> Stores => new() { Store.Sqlite, Store.Postgres };

    CoordinatorFactory Coordinator(Store store) =>
        new(store, store == Store.Postgres ? postgres.ConnectionString : null);

    static string NewAgentId() => "agent-" + Guid.NewGuid().ToString("N")[..12];

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Hello_RegistersAgent_ListedOnlineWithItsFacts(Store store)
    {
        using var coordinator = Coordinator(store);
        var id = NewAgentId();
        await using var stream = RawAgentStream.Open(coordinator.Channel());

        var welcome = await stream.HelloAsync(RawAgentStream.Hello(id, "web-1"));

        Assert.Equal(TimeSpan.FromSeconds(10), welcome.Config.HeartbeatInterval.ToTimeSpan());
        Assert.Equal("web", welcome.Config.Tags["role"]);
        var api = new Protocol.V1.Agents.AgentsClient(coordinator.Channel());
        var agent = await api.GetAgentAsync(new GetAgentRequest { Id = id });
        Assert.Equal(AgentStatus.Online, agent.Status);
        Assert.Equal("web-1", agent.Hostname);
        Assert.Equal("1.2.3", agent.AgentVersion);
        Assert.Equal("web", agent.Tags["role"]);
        Assert.False(string.IsNullOrEmpty(agent.Replica));

        using var http = coordinator.CreateClient();
        var json = await http.GetFromJsonAsync<JsonElement>("/api/v1/agents");
        var listed = json.GetProperty("agents").EnumerateArray().Single(a => a.GetProperty("id").GetString() == id);
        Assert.Equal("AGENT_STATUS_ONLINE", listed.GetProperty("status").GetString());
        Assert.Equal("web-1", listed.GetProperty("hostname").GetString());
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Batch_IsStoredOnce_AndAcknowledgedAgainOnRedelivery(Store store)
    {
        using var coordinator = Coordinator(store);
        var id = NewAgentId();
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id, epoch: 7));
        var batch = new Batch
        {
            Key = new BatchKey { Epoch = 7, Counter = 1 },
            CreatedAt = Timestamp.FromDateTime(DateTime.UtcNow),
            Events = new AgentEvents { Events = { new AgentEvent { Kind = "agent.started", Message = "hello", Time = Timestamp.FromDateTime(DateTime.UtcNow) } } },
        };

        for (var delivery = 0; delivery < 3; delivery++)
        {
            await stream.SendAsync(new AgentMessage { Batch = batch });
            var reply = await stream.ReceiveAsync();
            Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, reply.BodyCase);
            Assert.Equal(7UL, reply.Ack.Keys.Single().Epoch);
            Assert.Equal(1UL, reply.Ack.Keys.Single().Counter);
        }

        // Same counter in a new epoch (agent state reset) is a different batch, not a duplicate.
        batch.Key = new BatchKey { Epoch = 8, Counter = 1 };
        await stream.SendAsync(new AgentMessage { Batch = batch });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);

        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        var events = await db.AgentEvents.Where(e => e.AgentId == id).ToListAsync();
        Assert.Equal(2, events.Count);
        Assert.Equal([7L, 8L], events.Select(e => e.Epoch).Order().ToArray());
        Assert.All(events, e => Assert.Equal("agent.started", e.Kind));
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task MalformedBatch_IsRejectedWithReason_AndStreamStaysUsable(Store store)
    {
        using var coordinator = Coordinator(store);
        var id = NewAgentId();
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));

        await stream.SendAsync(new AgentMessage { Batch = new Batch { Key = new BatchKey { Epoch = 42, Counter = 1 } } });
        var reply = await stream.ReceiveAsync();
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Reject, reply.BodyCase);
        Assert.Contains("payload is missing", reply.Reject.Reason);

        // A timestamp far out of range must not crash the ingest either.
        var bad = new Batch
        {
            Key = new BatchKey { Epoch = 42, Counter = 2 },
            Events = new AgentEvents { Events = { new AgentEvent { Kind = "x", Time = new Timestamp { Seconds = long.MaxValue } } } },
        };
        await stream.SendAsync(new AgentMessage { Batch = bad });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Reject, (await stream.ReceiveAsync()).BodyCase);

        await stream.SendAsync(new AgentMessage { Heartbeat = new Heartbeat() });
        var good = new Batch { Key = new BatchKey { Epoch = 42, Counter = 3 }, Events = new AgentEvents { Events = { new AgentEvent { Kind = "ok" } } } };
        await stream.SendAsync(new AgentMessage { Batch = good });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);
    }

    [Fact]
    public async Task Agent_GoesOffline_AfterHeartbeatTimeout_AndItsStreamIsClosed()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var coordinator = Coordinator(Store.Sqlite).WithTime(time);
        var id = NewAgentId();
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));
        var api = new Protocol.V1.Agents.AgentsClient(coordinator.Channel());
        Assert.Equal(AgentStatus.Online, (await api.GetAgentAsync(new GetAgentRequest { Id = id })).Status);

        // A heartbeat inside the timeout keeps it online.
        time.Advance(TimeSpan.FromSeconds(30));
        await stream.SendAsync(new AgentMessage { Heartbeat = new Heartbeat() });
        await Eventually.UntilAsync(async () => (await api.GetAgentAsync(new GetAgentRequest { Id = id })).LastSeen.ToDateTimeOffset() >= time.GetUtcNow().AddSeconds(-1), "the heartbeat to be recorded");
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(AgentStatus.Online, (await api.GetAgentAsync(new GetAgentRequest { Id = id })).Status);

        // Silence past the timeout (35 s): offline, and the coordinator closes the stream.
        time.Advance(TimeSpan.FromSeconds(6));
        Assert.Equal(AgentStatus.Offline, (await api.GetAgentAsync(new GetAgentRequest { Id = id })).Status);
        var status = await stream.FinalStatusAsync();
        Assert.Equal(StatusCode.OK, status.StatusCode);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task ClosedStream_MarksAgentOffline(Store store)
    {
        using var coordinator = Coordinator(store);
        var id = NewAgentId();
        var api = new Protocol.V1.Agents.AgentsClient(coordinator.Channel());
        await using (var stream = RawAgentStream.Open(coordinator.Channel()))
        {
            await stream.HelloAsync(RawAgentStream.Hello(id));
            await stream.CompleteAsync();
            await stream.FinalStatusAsync();
        }

        var agent = await Eventually.UntilAsync(() => api.GetAgentAsync(new GetAgentRequest { Id = id }).ResponseAsync, a => a.Status == AgentStatus.Offline, "the agent to be offline");
        Assert.Equal("", agent.Replica);
    }

    [Fact]
    public async Task FirstMessageNotHello_IsRefusedNamingIt()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.SendAsync(new AgentMessage { Heartbeat = new Heartbeat() });
        var status = await stream.FinalStatusAsync();
        Assert.Equal(StatusCode.InvalidArgument, status.StatusCode);
        Assert.Contains("first message must be a hello", status.Detail);
    }

    [Theory]
    [InlineData("UPPER", "hello.agent_id")]
    [InlineData("", "hello.agent_id")]
    [InlineData("a/b", "hello.agent_id")]
    public async Task MalformedAgentId_IsRefusedNamingTheField(string agentId, string field)
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var hello = RawAgentStream.Hello("placeholder");
        hello.AgentId = agentId;
        await using var bad = RawAgentStream.Open(coordinator.Channel());
        await bad.SendAsync(new AgentMessage { Hello = hello });
        var status = await bad.FinalStatusAsync();
        Assert.Equal(StatusCode.InvalidArgument, status.StatusCode);
        Assert.Contains(field, status.Detail);
        Assert.Contains($"'{agentId}'", status.Detail);
    }

    [Fact]
    public async Task IncompatibleProtocolVersion_IsRefusedWithClearStatus()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var byHeader = RawAgentStream.Open(coordinator.Channel(), protocolHeader: 99);
        // The refusal may arrive before the hello is even written.
        try { await byHeader.SendAsync(new AgentMessage { Hello = RawAgentStream.Hello(NewAgentId()) }); } catch (RpcException) { }
        var status = await byHeader.FinalStatusAsync();
        Assert.Equal(StatusCode.FailedPrecondition, status.StatusCode);
        Assert.Contains("protocol version '99' is not supported", status.Detail);

        await using var byHello = RawAgentStream.Open(coordinator.Channel(), protocolHeader: null);
        var hello = RawAgentStream.Hello(NewAgentId());
        hello.ProtocolVersion = 2;
        await byHello.SendAsync(new AgentMessage { Hello = hello });
        status = await byHello.FinalStatusAsync();
        Assert.Equal(StatusCode.FailedPrecondition, status.StatusCode);
        Assert.Contains("hello.protocol_version: 2", status.Detail);
    }

    [Fact]
    public async Task OversizedMessage_FailsOnlyThatStream()
    {
        using var coordinator = Coordinator(Store.Sqlite).With("Fleet:Agents:MaxMessageBytes", (256 * 1024).ToString(System.Globalization.CultureInfo.InvariantCulture));
        await using var healthy = RawAgentStream.Open(coordinator.Channel());
        await healthy.HelloAsync(RawAgentStream.Hello(NewAgentId(), epoch: 1));
        await using var offender = RawAgentStream.Open(coordinator.Channel());
        await offender.HelloAsync(RawAgentStream.Hello(NewAgentId()));

        var huge = new Batch { Key = new BatchKey { Epoch = 42, Counter = 1 }, Events = new AgentEvents { Events = { new AgentEvent { Kind = "big", Message = new string('x', 512 * 1024) } } } };
        try { await offender.SendAsync(new AgentMessage { Batch = huge }); } catch (RpcException) { }
        var status = await offender.FinalStatusAsync();
        Assert.Equal(StatusCode.ResourceExhausted, status.StatusCode);

        var small = new Batch { Key = new BatchKey { Epoch = 1, Counter = 1 }, Events = new AgentEvents { Events = { new AgentEvent { Kind = "small" } } } };
        await healthy.SendAsync(new AgentMessage { Batch = small });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await healthy.ReceiveAsync()).BodyCase);
    }

    [Fact]
    public async Task UnparseableBytes_FailOnlyThatStream()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var healthy = RawAgentStream.Open(coordinator.Channel());
        await healthy.HelloAsync(RawAgentStream.Hello(NewAgentId(), epoch: 3));

        // Bytes that are not a valid AgentMessage, sent with a pass-through marshaller.
        var raw = new Method<byte[], byte[]>(MethodType.DuplexStreaming, "fleet.v1.AgentGateway", "Connect",
            Marshallers.Create(b => b, b => b), Marshallers.Create(b => b, b => b));
        using var call = coordinator.Channel().CreateCallInvoker().AsyncDuplexStreamingCall(raw, null, new CallOptions());
        await call.RequestStream.WriteAsync([0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01]).DefaultTimeout();
        var error = await Assert.ThrowsAsync<RpcException>(async () => { while (await call.ResponseStream.MoveNext().DefaultTimeout()) { } });
        Assert.NotEqual(StatusCode.OK, error.StatusCode);

        var batch = new Batch { Key = new BatchKey { Epoch = 3, Counter = 1 }, Events = new AgentEvents { Events = { new AgentEvent { Kind = "still-fine" } } } };
        await healthy.SendAsync(new AgentMessage { Batch = batch });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await healthy.ReceiveAsync()).BodyCase);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task RemoveAgent_DeletesIt_AndClosesItsStream(Store store)
    {
        using var coordinator = Coordinator(store);
        var id = NewAgentId();
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));
        var api = new Protocol.V1.Agents.AgentsClient(coordinator.Channel("alice"));

        var removed = await api.RemoveAgentAsync(new RemoveAgentRequest { Id = id });

        Assert.True(removed.Disconnected);
        await stream.FinalStatusAsync();
        var missing = await Assert.ThrowsAsync<RpcException>(() => api.GetAgentAsync(new GetAgentRequest { Id = id }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);
        var again = await Assert.ThrowsAsync<RpcException>(() => api.RemoveAgentAsync(new RemoveAgentRequest { Id = id }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, again.StatusCode);
        Assert.Contains(id, again.Status.Detail);
    }

    [Fact]
    public async Task RestApi_AnswersBadIdWith400NamingTheField_AndUnknownWith404()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        using var http = coordinator.CreateClient();

        var bad = await http.GetAsync("/api/v1/agents/Not%20Valid");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("id: 'Not Valid' is not a valid agent id", await bad.Content.ReadAsStringAsync());

        var missing = await http.GetAsync("/api/v1/agents/nobody-here");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("agent 'nobody-here' not found", await missing.Content.ReadAsStringAsync());

        var delete = await http.DeleteAsync("/api/v1/agents/nobody-here");
        Assert.Equal(HttpStatusCode.NotFound, delete.StatusCode);
    }
}
