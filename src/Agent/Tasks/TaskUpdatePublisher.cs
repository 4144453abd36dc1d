using Fleet.Agent.Outbox;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Agent.Tasks;

/// <summary>Writes task updates to the durable outbox as "tasks" batches (one batch may carry several updates).</summary>
public sealed partial class TaskUpdatePublisher(DurableOutbox outbox, TimeProvider time, ILogger<TaskUpdatePublisher> logger)
{
    public TimeProvider Time => time;

    public TaskUpdate Update(string invocationId) => new() { InvocationId = invocationId, Time = Timestamp.FromDateTimeOffset(time.GetUtcNow()) };

    public async ValueTask PublishAsync(IReadOnlyCollection<TaskUpdate> updates, CancellationToken cancellationToken)
    {
        if (updates.Count == 0) return;
        var batch = new Batch { CreatedAt = Timestamp.FromDateTimeOffset(time.GetUtcNow()), Tasks = new TaskUpdates { Updates = { updates } } };
        var result = await outbox.AppendAsync(batch.ToByteArray(), cancellationToken);
        if (result.Status == AppendStatus.Dropped) LogDropped(updates.Count, updates.First().InvocationId, result.Reason);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Count} task updates of invocation {InvocationId} were dropped by the outbox: {Reason}")]
    partial void LogDropped(int count, string invocationId, string? reason);
}
