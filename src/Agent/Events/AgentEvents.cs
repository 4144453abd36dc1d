using Fleet.Agent.Outbox;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Agent.Events;

/// <summary>Records agent events (started, outbox dropped data, ...) through the durable outbox.</summary>
public sealed class AgentEventPublisher(DurableOutbox outbox, TimeProvider time)
{
    public async ValueTask<AppendResult> PublishAsync(string kind, string message, IReadOnlyDictionary<string, string>? attributes, CancellationToken cancellationToken)
    {
        var now = Timestamp.FromDateTimeOffset(time.GetUtcNow());
        var e = new AgentEvent { Time = now, Kind = kind, Message = message };
        if (attributes is not null)
            foreach (var (key, value) in attributes) e.Attributes[key] = value;
        var batch = new Batch { CreatedAt = now, Events = new AgentEvents { Events = { e } } };
        return await outbox.AppendAsync(batch.ToByteArray(), cancellationToken);
    }
}
