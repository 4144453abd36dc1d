using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using System.Threading.Channels;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Agents;

/// <summary>Stores one kind of batch payload. Each feature (events, metrics, logs, results) registers one.</summary>
public interface IBatchPayloadHandler
{
    Batch.PayloadOneofCase Payload { get; }

    /// <summary>Adds the payload's rows to <paramref name="db"/> (or writes them on its connection): they commit in the dedupe transaction.</summary>
    Task AddAsync(FleetDbContext db, string agentId, Batch batch, CancellationToken cancellationToken);

    /// <summary>Adds the rows of several batches at once (one COPY instead of one per batch, for instance).</summary>
    async Task AddGroupAsync(FleetDbContext db, IReadOnlyList<(string AgentId, Batch Batch)> batches, CancellationToken cancellationToken)
    {
        foreach (var (agentId, batch) in batches)
            await AddAsync(db, agentId, batch, cancellationToken);
    }

    /// <summary>After the commit (first delivery only): update caches such as latest values.</summary>
    Task AfterCommitAsync(string agentId, Batch batch, CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>
/// Told about batches after their transaction committed (first delivery only), e.g. so alert rules evaluate as samples
/// arrive. Must return quickly (queue the work): the ingest writer calls it before taking the next group.
/// </summary>
public interface IBatchCommittedHook
{
    void Committed(IReadOnlyList<(string AgentId, Batch Batch)> batches);
}

public enum IngestOutcome { Stored, Duplicate, Rejected }

public readonly record struct IngestResult(IngestOutcome Outcome, string? Reason = null);

/// <summary>
/// Stores agent batches exactly once: the (agent, epoch, counter) row and the payload's rows commit in one
/// transaction, and the agent gets its ack only after that commit. A redelivered batch is acknowledged again
/// without storing anything.
/// One writer groups the batches that arrive while the previous group is being written — from any number of
/// streams — into a single transaction (one commit, one WAL flush), so storage keeps up with thousands of agents.
/// If a group fails (one malformed batch, a redelivery racing its first delivery), its batches are stored one by
/// one so each gets its own answer.
/// </summary>
public sealed partial class BatchIngest(IDbContextFactory<FleetDbContext> dbFactory, IEnumerable<IBatchPayloadHandler> handlers, TimeProvider time, ILogger<BatchIngest> logger,
    IEnumerable<IBatchCommittedHook> committedHooks) : BackgroundService
{
    const int MaxGroup = 500;
    readonly Dictionary<Batch.PayloadOneofCase, IBatchPayloadHandler> handlers = handlers.ToDictionary(h => h.Payload);
    readonly Channel<Pending> queue = Channel.CreateBounded<Pending>(new BoundedChannelOptions(20_000) { SingleReader = true });

    sealed record Pending(string AgentId, Batch Batch, IBatchPayloadHandler Handler, TaskCompletionSource<IngestResult> Done)
    {
        public (string, long, long) Key => (AgentId, unchecked((long)Batch.Key.Epoch), unchecked((long)Batch.Key.Counter));
    }

    public async Task<IngestResult> StoreAsync(string agentId, Batch batch, CancellationToken cancellationToken)
    {
        if (batch.Key is null)
            return new(IngestOutcome.Rejected, "batch.key is missing");
        if (batch.PayloadCase == Batch.PayloadOneofCase.None)
            return new(IngestOutcome.Rejected, $"batch {batch.Key.Epoch}/{batch.Key.Counter}: payload is missing");
        if (!handlers.TryGetValue(batch.PayloadCase, out var handler))
            return new(IngestOutcome.Rejected, $"batch {batch.Key.Epoch}/{batch.Key.Counter}: payload '{batch.PayloadCase}' is not supported by this coordinator");
        var pending = new Pending(agentId, batch, handler, new TaskCompletionSource<IngestResult>(TaskCreationOptions.RunContinuationsAsynchronously));
        await queue.Writer.WriteAsync(pending, cancellationToken);
        return await pending.Done.Task.WaitAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var group = new List<Pending>(MaxGroup);
        try
        {
            while (await queue.Reader.WaitToReadAsync(stoppingToken))
            {
                group.Clear();
                while (group.Count < MaxGroup && queue.Reader.TryRead(out var pending)) group.Add(pending);
                await StoreGroupAsync(group, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
        while (queue.Reader.TryRead(out var left)) left.Done.TrySetCanceled(stoppingToken);
    }

    async Task StoreGroupAsync(List<Pending> group, CancellationToken cancellationToken)
    {
        var fresh = new List<Pending>(group.Count);
        var later = new List<Pending>();
        var started = time.GetTimestamp();
        TimeSpan dedupe = default, write = default, commit = default;
        try
        {
            await using var db = dbFactory.CreateDbContext();
            var agentIds = group.Select(p => p.AgentId).Distinct().ToList();
            var counters = group.Select(p => p.Key.Item3).Distinct().ToList();
            var existing = (await db.ReceivedBatches.AsNoTracking()
                    .Where(b => agentIds.Contains(b.AgentId) && counters.Contains(b.Counter))
                    .Select(b => new { b.AgentId, b.Epoch, b.Counter })
                    .ToListAsync(cancellationToken))
                .Select(b => (b.AgentId, b.Epoch, b.Counter)).ToHashSet();
            var seen = new HashSet<(string, long, long)>();
            foreach (var p in group)
            {
                if (existing.Contains(p.Key)) p.Done.TrySetResult(new(IngestOutcome.Duplicate));
                else if (!seen.Add(p.Key)) later.Add(p); // the same batch twice in one group: answer it after the first commits
                else fresh.Add(p);
            }
            dedupe = time.GetElapsedTime(started);
            if (fresh.Count > 0)
            {
                await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
                await AddReceivedAsync(db, fresh, time.GetUtcNow().UtcDateTime, cancellationToken);
                foreach (var byHandler in fresh.GroupBy(p => p.Handler))
                    await byHandler.Key.AddGroupAsync(db, byHandler.Select(p => (p.AgentId, p.Batch)).ToList(), cancellationToken);
                await db.SaveChangesAsync(cancellationToken);
                write = time.GetElapsedTime(started);
                await tx.CommitAsync(cancellationToken);
                commit = time.GetElapsedTime(started);
                NotifyCommitted(fresh.Select(p => (p.AgentId, p.Batch)).ToList());
                // Caches of all batches updated at once (Redis pipelines them), each batch acked as soon as its own is done.
                await Task.WhenAll(fresh.Select(async p =>
                {
                    await AfterCommitAsync(p, cancellationToken);
                    p.Done.TrySetResult(new(IngestOutcome.Stored));
                }));
                var total = time.GetElapsedTime(started);
                LogGroupStored(fresh.Count, dedupe.TotalMilliseconds, (write - dedupe).TotalMilliseconds, (commit - write).TotalMilliseconds, (total - commit).TotalMilliseconds);
            }
        }
        catch (Exception ex) when (ex is DbUpdateException or System.Data.Common.DbException or ArgumentException or InvalidOperationException or FormatException or OverflowException)
        {
            if (fresh.Count > 1) LogGroupFallback(fresh.Count, ex.Message);
            foreach (var p in fresh.Where(p => !p.Done.Task.IsCompleted))
                await StoreOneAsync(p, cancellationToken);
        }
        foreach (var p in later)
            await StoreOneAsync(p, cancellationToken);
    }

    /// <summary>The dedupe rows of a group in one statement (PostgreSQL) or one prepared statement (SQLite).</summary>
    static Task AddReceivedAsync(FleetDbContext db, List<Pending> fresh, DateTime now, CancellationToken cancellationToken) =>
        BulkInsert.InsertAsync(db, "received_batches",
            [
                ("AgentId", fresh.Select(p => p.AgentId).ToArray()),
                ("Epoch", fresh.Select(p => p.Key.Item2).ToArray()),
                ("Counter", fresh.Select(p => p.Key.Item3).ToArray()),
                ("ReceivedAt", fresh.Select(_ => now).ToArray()),
            ],
            "", "", cancellationToken);

    void NotifyCommitted(IReadOnlyList<(string AgentId, Batch Batch)> batches)
    {
        foreach (var hook in committedHooks) hook.Committed(batches);
    }

    async Task AfterCommitAsync(Pending p, CancellationToken cancellationToken)
    {
        try { await p.Handler.AfterCommitAsync(p.AgentId, p.Batch, cancellationToken); }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogAfterCommitFailed(p.AgentId, ex); // caches only: the batch is stored, the ack stands
        }
    }

    async Task StoreOneAsync(Pending p, CancellationToken cancellationToken)
    {
        try { p.Done.TrySetResult(await StoreOneCoreAsync(p, cancellationToken)); }
        catch (Exception ex)
        {
            p.Done.TrySetException(ex); // no ack: the agent will send it again
        }
    }

    async Task<IngestResult> StoreOneCoreAsync(Pending p, CancellationToken cancellationToken)
    {
        var (agentId, epoch, counter) = p.Key;
        var batch = p.Batch;
        await using var db = dbFactory.CreateDbContext();
        if (await db.ReceivedBatches.AnyAsync(b => b.AgentId == agentId && b.Epoch == epoch && b.Counter == counter, cancellationToken))
            return new(IngestOutcome.Duplicate);

        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        db.ReceivedBatches.Add(new ReceivedBatch { AgentId = agentId, Epoch = epoch, Counter = counter, ReceivedAt = time.GetUtcNow().UtcDateTime });
        try
        {
            await p.Handler.AddAsync(db, agentId, batch, cancellationToken);
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
            NotifyCommitted([(agentId, batch)]);
            await AfterCommitAsync(p, cancellationToken);
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

    [LoggerMessage(Level = LogLevel.Debug, Message = "Stored a group of {Count} batches: dedupe {DedupeMs:0} ms, write {WriteMs:0} ms, commit {CommitMs:0} ms, caches {CachesMs:0} ms")]
    partial void LogGroupStored(int count, double dedupeMs, double writeMs, double commitMs, double cachesMs);

    [LoggerMessage(Level = LogLevel.Debug, Message = "A group of {Count} batches failed ({Problem}); storing them one by one")]
    partial void LogGroupFallback(int count, string problem);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stored a batch from agent {AgentId} but could not update caches after the commit")]
    partial void LogAfterCommitFailed(string agentId, Exception exception);
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
