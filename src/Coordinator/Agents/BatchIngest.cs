using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Agents;

/// <summary>Stores one kind of batch payload. Each feature (events, metrics, logs, results) registers one.</summary>
public interface IBatchPayloadHandler
{
    Batch.PayloadOneofCase Payload { get; }

    /// <summary>Adds the payload's rows to <paramref name="db"/> (or writes them on its connection): they commit in the dedupe transaction.</summary>
    Task AddAsync(FleetDbContext db, string agentId, Batch batch, CancellationToken cancellationToken);

    /// <summary>After the commit (first delivery only): update caches such as latest values.</summary>
    Task AfterCommitAsync(string agentId, Batch batch, CancellationToken cancellationToken) => Task.CompletedTask;
}

public enum IngestOutcome { Stored, Duplicate, Rejected }

public readonly record struct IngestResult(IngestOutcome Outcome, string? Reason = null);

/// <summary>
/// Stores agent batches exactly once: the (agent, epoch, counter) row and the payload's rows commit in one
/// transaction, and the agent gets its ack only after that commit. A redelivered batch is acknowledged again
/// without storing anything.
/// </summary>
public sealed class BatchIngest(IDbContextFactory<FleetDbContext> dbFactory, IEnumerable<IBatchPayloadHandler> handlers, TimeProvider time)
{
    readonly Dictionary<Batch.PayloadOneofCase, IBatchPayloadHandler> handlers = handlers.ToDictionary(h => h.Payload);

    public async Task<IngestResult> StoreAsync(string agentId, Batch batch, CancellationToken cancellationToken)
    {
        if (batch.Key is null)
            return new(IngestOutcome.Rejected, "batch.key is missing");
        if (batch.PayloadCase == Batch.PayloadOneofCase.None)
            return new(IngestOutcome.Rejected, $"batch {batch.Key.Epoch}/{batch.Key.Counter}: payload is missing");
        if (!handlers.TryGetValue(batch.PayloadCase, out var handler))
            return new(IngestOutcome.Rejected, $"batch {batch.Key.Epoch}/{batch.Key.Counter}: payload '{batch.PayloadCase}' is not supported by this coordinator");

        var epoch = unchecked((long)batch.Key.Epoch);
        var counter = unchecked((long)batch.Key.Counter);
        await using var db = dbFactory.CreateDbContext();
        if (await db.ReceivedBatches.AnyAsync(b => b.AgentId == agentId && b.Epoch == epoch && b.Counter == counter, cancellationToken))
            return new(IngestOutcome.Duplicate);

        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        db.ReceivedBatches.Add(new ReceivedBatch { AgentId = agentId, Epoch = epoch, Counter = counter, ReceivedAt = time.GetUtcNow().UtcDateTime });
        try
        {
            await handler.AddAsync(db, agentId, batch, cancellationToken);
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or FormatException or OverflowException)
        {
            // Malformed content (a timestamp out of range, ...): it can never be stored, so say so instead of retrying forever.
            return new(IngestOutcome.Rejected, $"batch {batch.Key.Epoch}/{batch.Key.Counter}: {ex.Message}");
        }
        try
        {
            await db.SaveChangesAsync(cancellationToken);
            await tx.CommitAsync(cancellationToken);
            await handler.AfterCommitAsync(agentId, batch, cancellationToken);
            return new(IngestOutcome.Stored);
        }
        catch (DbUpdateException)
        {
            // The same batch stored concurrently (a redelivery raced a slow first delivery) is a duplicate;
            // anything else is a real failure: no ack, the agent will send it again.
            if (await ExistsAsync(agentId, epoch, counter, cancellationToken))
                return new(IngestOutcome.Duplicate);
            throw;
        }
    }

    async Task<bool> ExistsAsync(string agentId, long epoch, long counter, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        return await db.ReceivedBatches.AnyAsync(b => b.AgentId == agentId && b.Epoch == epoch && b.Counter == counter, cancellationToken);
    }
}

/// <summary>Agent events (started, outbox dropped data, ...).</summary>
sealed class AgentEventsHandler : IBatchPayloadHandler
{
    public Batch.PayloadOneofCase Payload => Batch.PayloadOneofCase.Events;

    public Task AddAsync(FleetDbContext db, string agentId, Batch batch, CancellationToken cancellationToken)
    {
        var index = 0;
        foreach (var e in batch.Events.Events)
        {
            db.AgentEvents.Add(new AgentEventRecord
            {
                AgentId = agentId,
                Epoch = unchecked((long)batch.Key.Epoch),
                Counter = unchecked((long)batch.Key.Counter),
                Index = index++,
                Time = e.Time?.ToDateTime() ?? batch.CreatedAt?.ToDateTime() ?? DateTime.UnixEpoch,
                Kind = string.IsNullOrEmpty(e.Kind) ? "unknown" : e.Kind[..Math.Min(e.Kind.Length, 128)],
                Message = e.Message,
                AttributesJson = System.Text.Json.JsonSerializer.Serialize(e.Attributes.ToDictionary(a => a.Key, a => a.Value)),
            });
        }
        return Task.CompletedTask;
    }
}
