using Fleet.Coordinator.Blobs;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Runs;

/// <summary>
/// Invocation output: staged as chunks (invocation, offset) while it arrives; once the agent reported the result and
/// all its output_bytes are here, assembled into the blob "runs/{runId}/{agentId}.log", the inline head and tail kept
/// on the invocation, and the chunks deleted. Finalizing is idempotent (the blob is written before the row changes).
/// </summary>
public sealed partial class RunOutput(IDbContextFactory<FleetDbContext> dbFactory, IBlobStore blobs, IOptions<RunsOptions> options, ILogger<RunOutput> logger)
{
    const int FinalizeBatch = 100;
    const int ReadPiece = 64 * 1024;

    public static string BlobKeyOf(string runId, string agentId) => $"runs/{runId}/{agentId}.log";

    public async Task FinalizeAsync(CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        // No output: nothing to assemble and no blob. All of them in one statement (stray chunks of such an invocation go too).
        await using (var tx = await db.Database.BeginTransactionAsync(cancellationToken))
        {
            var empty = db.Invocations.Where(i => i.ResultReported && !i.OutputFinalized && i.OutputBytes == 0);
            await db.InvocationOutput.Where(c => empty.Any(i => i.Id == c.InvocationId)).ExecuteDeleteAsync(cancellationToken);
            var finalized = await empty.ExecuteUpdateAsync(s => s.SetProperty(i => i.OutputFinalized, true), cancellationToken);
            await tx.CommitAsync(cancellationToken);
            if (finalized > 0) LogFinalizedEmpty(finalized);
        }
        var ready = await db.Invocations.AsNoTracking()
            .Where(i => i.ResultReported && !i.OutputFinalized)
            .Select(i => new { i.Id, i.OutputBytes, Held = db.InvocationOutput.Where(c => c.InvocationId == i.Id).Sum(c => (long?)c.Data.Length) ?? 0 })
            .Where(i => i.Held >= i.OutputBytes)
            .Take(FinalizeBatch)
            .ToListAsync(cancellationToken);
        foreach (var item in ready)
            await FinalizeOneAsync(item.Id, cancellationToken);
    }

    async Task FinalizeOneAsync(string invocationId, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var invocation = await db.Invocations.SingleAsync(i => i.Id == invocationId, cancellationToken);
        var inline = options.Value.InlineOutputBytes;
        if (invocation.OutputBytes > 0)
        {
            var run = await db.Runs.AsNoTracking().SingleAsync(r => r.Id == invocation.RunId, cancellationToken);
            using var assembled = new MemoryStream();
            await foreach (var piece in ReadChunksAsync(db, invocationId, cancellationToken))
                assembled.Write(piece.Span);
            if (assembled.Length < invocation.OutputBytes) return; // a gap: wait for the missing chunk
            var bytes = OutputMask.Apply(assembled.ToArray()[..(int)invocation.OutputBytes], InvocationUpdates.SecretValues(run));
            var key = BlobKeyOf(invocation.RunId, invocation.AgentId);
            await blobs.PutAsync(key, new MemoryStream(bytes, writable: false), "text/plain; charset=utf-8", cancellationToken);
            invocation.OutputHead = bytes[..Math.Min(inline, bytes.Length)];
            invocation.OutputTail = bytes.Length > inline ? bytes[Math.Max(inline, bytes.Length - inline)..] : [];
            invocation.OutputBlobKey = key;
        }
        invocation.OutputFinalized = true;
        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        await db.SaveChangesAsync(cancellationToken);
        await db.InvocationOutput.Where(c => c.InvocationId == invocationId).ExecuteDeleteAsync(cancellationToken);
        await tx.CommitAsync(cancellationToken);
        LogFinalized(invocationId, invocation.OutputBytes);
    }

    /// <summary>
    /// Head and tail of an output that is still arriving or not yet finalized, from the staged chunks: so a running
    /// invocation shows its output so far, and a just-finished one shows all of it before the finalizer ran.
    /// </summary>
    public async Task<(byte[] Head, byte[] Tail)> StagedInlineAsync(FleetDbContext db, InvocationRecord invocation, IReadOnlyList<byte[]> secrets, CancellationToken cancellationToken)
    {
        var inline = options.Value.InlineOutputBytes;
        var chunks = db.InvocationOutput.AsNoTracking().Where(c => c.InvocationId == invocation.Id);
        var held = await chunks.MaxAsync(c => (long?)(c.Offset + c.Data.Length), cancellationToken) ?? 0;
        if (held == 0) return ([], []);
        var head = await ContiguousAsync(chunks.Where(c => c.Offset < inline), 0, inline, cancellationToken);
        if (held <= inline || head.Length < inline) return (OutputMask.Apply(head, secrets), []);
        var from = Math.Max(inline, held - inline);
        var tailChunks = chunks.Where(c => c.Offset + c.Data.Length > from);
        var start = await tailChunks.MinAsync(c => (long?)c.Offset, cancellationToken) ?? from;
        var tail = await ContiguousAsync(tailChunks, start, int.MaxValue, cancellationToken);
        var skip = (int)Math.Min(tail.Length, Math.Max(0, from - start));
        return (OutputMask.Apply(head, secrets), OutputMask.Apply(tail[skip..], secrets));
    }

    static async Task<byte[]> ContiguousAsync(IQueryable<InvocationOutputChunk> chunks, long start, int max, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        var position = start;
        foreach (var chunk in await chunks.OrderBy(c => c.Offset).ToListAsync(cancellationToken))
        {
            if (chunk.Offset > position || buffer.Length >= max) break;
            var skip = (int)(position - chunk.Offset);
            if (skip >= chunk.Data.Length) continue;
            buffer.Write(chunk.Data, skip, chunk.Data.Length - skip);
            position += chunk.Data.Length - skip;
        }
        var bytes = buffer.ToArray();
        return bytes.Length > max ? bytes[..max] : bytes;
    }

    /// <summary>The staged chunks in order, as one contiguous byte sequence (overlaps skipped, stops at a gap).</summary>
    static async IAsyncEnumerable<ReadOnlyMemory<byte>> ReadChunksAsync(FleetDbContext db, string invocationId, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        long position = 0;
        await foreach (var chunk in db.InvocationOutput.AsNoTracking().Where(c => c.InvocationId == invocationId).OrderBy(c => c.Offset).AsAsyncEnumerable().WithCancellation(cancellationToken))
        {
            if (chunk.Offset > position) yield break;
            var skip = (int)(position - chunk.Offset);
            if (skip >= chunk.Data.Length) continue;
            yield return chunk.Data.AsMemory(skip);
            position += chunk.Data.Length - skip;
        }
    }

    /// <summary>The invocation's full output as stored: from the blob once finalized, else from the staged chunks.</summary>
    public async IAsyncEnumerable<ReadOnlyMemory<byte>> ReadAsync(InvocationRecord invocation, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var key = invocation.OutputBlobKey;
        if (key is null)
        {
            // Not finalized when the caller looked. PostgreSQL: the key check and the chunks in one snapshot, so a
            // finalizer that deletes the chunks meanwhile cannot truncate this read. SQLite: no transaction (it would
            // take the write lock for as long as the client downloads); the chunk query is a snapshot by itself, and
            // if the chunks were gone before it started, the blob is there instead.
            await using var db = dbFactory.CreateDbContext();
            await using var snapshot = db.Database.IsNpgsql()
                ? await db.Database.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken)
                : null;
            var id = invocation.Id;
            key = await db.Invocations.AsNoTracking().Where(i => i.Id == id).Select(i => i.OutputBlobKey).SingleOrDefaultAsync(cancellationToken);
            if (key is null)
            {
                var any = false;
                await foreach (var piece in ReadChunksAsync(db, id, cancellationToken))
                {
                    any = true;
                    yield return piece;
                }
                if (any || snapshot is not null) yield break;
                key = await db.Invocations.AsNoTracking().Where(i => i.Id == id).Select(i => i.OutputBlobKey).SingleOrDefaultAsync(cancellationToken);
                if (key is null) yield break;
            }
        }
        await using var stream = await blobs.OpenReadAsync(key, cancellationToken)
            ?? throw new InvalidOperationException($"the output blob '{key}' of invocation '{invocation.Id}' is missing");
        var buffer = new byte[ReadPiece];
        int read;
        while ((read = await stream.ReadAsync(buffer, cancellationToken)) > 0)
            yield return buffer.AsMemory(0, read).ToArray();
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Outputs of {Count} invocations without output finalized")]
    partial void LogFinalizedEmpty(int count);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Output of invocation {InvocationId} finalized ({Bytes} bytes)")]
    partial void LogFinalized(string invocationId, long bytes);
}
