using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Bench.LoadGen.StubServer;

public sealed record StubOptions(int Port, int RejectEvery, TimeSpan ReportEvery, long ExpectLines = 0, int TcpLinesPort = 0);

/// <summary>Checks the protocol header and Hello, answers Welcome, then Acks every Batch (or Rejects every Nth). Stores nothing;
/// the entries of a Logs batch are counted by the <see cref="LogSink"/> before the batch is acked.</summary>
public sealed class StubGateway(StubStats stats, StubOptions options, LogSink sink) : AgentGateway.AgentGatewayBase
{
    static readonly Welcome WelcomeMessage = new()
    {
        CoordinatorId = "loadgen-stub",
        Config = new AgentConfig
        {
            HeartbeatInterval = Duration.FromTimeSpan(TimeSpan.FromSeconds(10)),
            HeartbeatTimeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(30)),
        },
    };

    public override async Task Connect(IAsyncStreamReader<AgentMessage> requestStream, IServerStreamWriter<CoordinatorMessage> responseStream, ServerCallContext context)
    {
        var token = context.CancellationToken;
        if (context.RequestHeaders.GetValue("fleet-protocol-version") != "1")
        {
            stats.ProtocolError();
            throw new RpcException(new Status(StatusCode.FailedPrecondition, "request header fleet-protocol-version: 1 is required"));
        }
        if (!await requestStream.MoveNext(token))
        {
            return;
        }
        var hello = requestStream.Current.Hello;
        if (hello is null || hello.ProtocolVersion != 1 || string.IsNullOrEmpty(hello.AgentId))
        {
            stats.ProtocolError();
            throw new RpcException(new Status(StatusCode.FailedPrecondition, "the first message must be a Hello with agent_id and protocol_version 1"));
        }

        stats.StreamOpened();
        try
        {
            await responseStream.WriteAsync(new CoordinatorMessage { Welcome = WelcomeMessage }, token);
            long batches = 0;
            while (await requestStream.MoveNext(token))
            {
                var message = requestStream.Current;
                switch (message.BodyCase)
                {
                    case AgentMessage.BodyOneofCase.Heartbeat:
                        stats.Heartbeat();
                        break;

                    case AgentMessage.BodyOneofCase.Batch:
                        stats.Batch();
                        var key = message.Batch.Key;
                        if (message.Batch.Logs is { } logs)
                            foreach (var entry in logs.Entries) sink.Count(entry.Message);
                        if (options.RejectEvery > 0 && ++batches % options.RejectEvery == 0)
                        {
                            await responseStream.WriteAsync(new CoordinatorMessage { Reject = new Reject { Key = key, Reason = "stub: --reject-every" } }, token);
                            stats.Reject();
                        }
                        else
                        {
                            await responseStream.WriteAsync(new CoordinatorMessage { Ack = new Ack { Keys = { key } } }, token);
                            stats.Ack();
                        }
                        break;

                    default:
                        stats.ProtocolError();
                        throw new RpcException(new Status(StatusCode.FailedPrecondition, $"unexpected {message.BodyCase} after Hello"));
                }
            }
            // The agent half-closed its stream: end the call with OK.
        }
        finally
        {
            stats.StreamClosed();
        }
    }
}
