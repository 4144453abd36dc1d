using System.Collections.Concurrent;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Cli.Tests.Receivers;

/// <summary>The Receivers service from memory; every request (with its deadline and user) is kept for the test to read.</summary>
public sealed class FakeReceiversCoordinator : FakeGrpcServer
{
    private FakeReceiversCoordinator() => Receivers = Serve(new FakeReceiversService());

    public FakeReceiversService Receivers { get; }

    public static async Task<FakeReceiversCoordinator> StartAsync()
    {
        var coordinator = new FakeReceiversCoordinator();
        await coordinator.ListenAsync();
        return coordinator;
    }
}

/// <summary>A received call: the request, the caller's x-fleet-user and the deadline it set.</summary>
public sealed record ReceiverCall(Google.Protobuf.IMessage Message, string User, DateTime Deadline);

public sealed class FakeReceiversService : Fleet.Protocol.V1.Receivers.ReceiversBase
{
    public List<Receiver> Configured { get; } = [];

    /// <summary>What a test-send to each receiver comes to (default: delivered in 42 ms).</summary>
    public Dictionary<string, TestReceiverResponse> Outcomes { get; } = [];

    public ConcurrentQueue<ReceiverCall> Calls { get; } = new();

    public override Task<ListReceiversResponse> ListReceivers(ListReceiversRequest request, ServerCallContext context)
    {
        Record(request, context);
        var response = new ListReceiversResponse();
        response.Receivers.AddRange(Configured);
        return Task.FromResult(response);
    }

    public override Task<Receiver> GetReceiver(GetReceiverRequest request, ServerCallContext context)
    {
        Record(request, context);
        return Task.FromResult(Find(request.Name));
    }

    public override Task<TestReceiverResponse> TestReceiver(TestReceiverRequest request, ServerCallContext context)
    {
        Record(request, context);
        var receiver = Find(request.Name);
        return Task.FromResult(Outcomes.GetValueOrDefault(request.Name)
            ?? new TestReceiverResponse { Name = receiver.Name, Kind = receiver.Kind, Target = receiver.Target, Delivered = true, ElapsedMs = 42 });
    }

    private Receiver Find(string name) => Configured.FirstOrDefault(r => r.Name == name)
        ?? throw new RpcException(new Status(StatusCode.NotFound, $"name: receiver '{name}' is not configured (known: {string.Join(", ", Configured.Select(r => r.Name))})"));

    private void Record(Google.Protobuf.IMessage request, ServerCallContext context) =>
        Calls.Enqueue(new ReceiverCall(request, context.RequestHeaders.GetValue("x-fleet-user") ?? "", context.Deadline));

    internal static Timestamp At(DateTimeOffset time) => Timestamp.FromDateTimeOffset(time);
}
