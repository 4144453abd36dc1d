using Fleet.Protocol;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;
using Grpc.Net.Client;

namespace Fleet.Coordinator.Tests.Infrastructure;

/// <summary>A hand-driven agent stream, for testing the gateway's rules message by message.</summary>
public sealed class RawAgentStream : IAsyncDisposable
{
    readonly AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call;

    RawAgentStream(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call) => this.call = call;

    public static RawAgentStream Open(GrpcChannel channel, uint? protocolHeader = Wire.ProtocolVersion)
    {
        var headers = new Metadata();
        if (protocolHeader is { } v) headers.Add(Wire.ProtocolVersionHeader, v.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return new RawAgentStream(new AgentGateway.AgentGatewayClient(channel).Connect(headers));
    }

    public static Hello Hello(string agentId, string hostname = "host-under-test", ulong epoch = 42) => new()
    {
        AgentId = agentId,
        Hostname = hostname,
        MachineId = "machine-" + agentId,
        Os = "Debian GNU/Linux 12",
        Kernel = "6.1.0-test",
        AgentVersion = "1.2.3",
        ProtocolVersion = Wire.ProtocolVersion,
        Epoch = epoch,
        Tags = { ["role"] = "web" },
    };

    public Task SendAsync(AgentMessage message) => call.RequestStream.WriteAsync(message).DefaultTimeout();

    public Task CompleteAsync() => call.RequestStream.CompleteAsync().DefaultTimeout();

    public async Task<CoordinatorMessage> ReceiveAsync()
    {
        if (!await call.ResponseStream.MoveNext().DefaultTimeout())
            throw new InvalidOperationException("the coordinator closed the stream");
        return call.ResponseStream.Current;
    }

    /// <summary>Reads until the stream ends and returns its final status.</summary>
    public async Task<Status> FinalStatusAsync()
    {
        try
        {
            while (await call.ResponseStream.MoveNext().DefaultTimeout()) { }
            return call.GetStatus();
        }
        catch (RpcException ex)
        {
            return ex.Status;
        }
    }

    public async Task<Welcome> HelloAsync(Hello hello)
    {
        await SendAsync(new AgentMessage { Hello = hello });
        var reply = await ReceiveAsync();
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Welcome, reply.BodyCase);
        return reply.Welcome;
    }

    public ValueTask DisposeAsync()
    {
        call.Dispose();
        return ValueTask.CompletedTask;
    }
}
