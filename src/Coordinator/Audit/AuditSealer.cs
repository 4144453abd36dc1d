using System.Data.Common;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Audit;

/// <summary>
/// The one sealer: the replica that holds leadership gives every committed, unsealed audit row the next
/// sequence number and its chain hash, in the order it sees them, about once a second. It signs the chain
/// head into the blob store every few minutes and runs retention. Other replicas wait to take over.
/// </summary>
public sealed partial class AuditSealer(
    IAuditSealStore store,
    IDbContextFactory<FleetDbContext> dbFactory,
    AuditAnchors anchors,
    AuditRetention retention,
    IOptions<AuditOptions> options,
    TimeProvider time,
    ILogger<AuditSealer> logger) : BackgroundService
{
    static readonly TimeSpan LeaderRetry = TimeSpan.FromSeconds(2);
    readonly List<byte[]> unanchored = [];
    long headSeq;
    byte[] headHash = AuditChain.Genesis;
    long lastAnchoredSeq;
    DateTimeOffset lastAnchorTime;
    DateTimeOffset lastRetention = DateTimeOffset.MinValue;

    public bool IsLeader { get; private set; }
    public long SealedThroughSeq => Volatile.Read(ref headSeq);
    public long AnchoredThroughSeq => Volatile.Read(ref lastAnchoredSeq);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        anchors.EnsureKey();
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var lease = await store.TryLeadAsync(stoppingToken);
                if (lease is null)
                {
                    await Task.Delay(LeaderRetry, time, stoppingToken);
                    continue;
                }
                await LeadAsync(lease, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is DbException or InvalidOperationException or IOException or System.Data.DBConcurrencyException)
            {
                IsLeader = false;
                LogSealerFailed(ex);
                try { await Task.Delay(LeaderRetry, time, stoppingToken); }
                catch (OperationCanceledException) { break; }
            }
        }
        IsLeader = false;
    }

    async Task LeadAsync(SealerLease lease, CancellationToken stoppingToken)
    {
        await LoadStateAsync(lease, stoppingToken);
        IsLeader = true;
        LogLeading(headSeq, lastAnchoredSeq);
        using var timer = new PeriodicTimer(options.Value.SealInterval, time);
        do
        {
            while (await SealBatchAsync(lease, stoppingToken) == options.Value.SealBatchSize) { }
            if (unanchored.Count > 0 && (unanchored.Count >= options.Value.AnchorMaxRows || time.GetUtcNow() - lastAnchorTime >= options.Value.AnchorInterval))
                await AnchorAsync(stoppingToken);
            if (time.GetUtcNow() - lastRetention >= options.Value.RetentionInterval)
            {
                lastRetention = time.GetUtcNow();
                if (unanchored.Count > 0) await AnchorAsync(stoppingToken); // archive only what an anchor covers
                await retention.RunAsync(lastAnchoredSeq, stoppingToken);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    async Task LoadStateAsync(SealerLease lease, CancellationToken cancellationToken)
    {
        (headSeq, headHash) = await HeadAsync(lease.Connection, null, cancellationToken);
        var (existing, _, _) = await anchors.ReadAllAsync(cancellationToken);
        lastAnchoredSeq = existing.Count > 0 ? existing[^1].ToSeq : await BoundarySeqAsync(cancellationToken);
        lastAnchorTime = time.GetUtcNow();
        unanchored.Clear();
        // Rows sealed after the last anchor (a previous leader stopped before anchoring them).
        await using var command = lease.Connection.CreateCommand();
        command.CommandText = """SELECT "Hash" FROM audit_events WHERE "Seq" > @from ORDER BY "Seq" """;
        Parameter(command, "@from", lastAnchoredSeq);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            unanchored.Add((byte[])reader[0]);
    }

    async Task<long> BoundarySeqAsync(CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        return await db.Set<AuditArchiveBoundary>().MaxAsync(b => (long?)b.LastSeq, cancellationToken) ?? 0;
    }

    async Task<(long Seq, byte[] Hash)> HeadAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """SELECT "Seq", "Hash" FROM audit_events WHERE "Seq" IS NOT NULL ORDER BY "Seq" DESC LIMIT 1""";
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            if (await reader.ReadAsync(cancellationToken))
                return (reader.GetInt64(0), (byte[])reader[1]);
        await using var db = dbFactory.CreateDbContext();
        var boundary = await db.Set<AuditArchiveBoundary>().OrderByDescending(b => b.LastSeq).FirstOrDefaultAsync(cancellationToken);
        return boundary is null ? (0, AuditChain.Genesis) : (boundary.LastSeq, boundary.LastHash);
    }

    async Task<int> SealBatchAsync(SealerLease lease, CancellationToken cancellationToken)
    {
        await using var transaction = await lease.Connection.BeginTransactionAsync(cancellationToken);
        var (seq, previous) = await HeadAsync(lease.Connection, transaction, cancellationToken);
        await using var command = lease.Connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            SELECT "Id", "Time", "ActorKind", "Actor", "RemoteAddress", "Action", "Target", "Host", "ParametersJson", "Outcome"
            FROM audit_events WHERE "Seq" IS NULL ORDER BY "Id" LIMIT @limit
            """;
        Parameter(command, "@limit", options.Value.SealBatchSize);
        var seals = new List<(long Id, long Seq, byte[] Hash)>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                var row = new AuditChain.Row(++seq, reader.GetInt64(0), DateTime.SpecifyKind(reader.GetDateTime(1), DateTimeKind.Utc),
                    reader.GetString(2), reader.GetString(3), reader.GetString(4), reader.GetString(5), reader.GetString(6),
                    reader.GetString(7), reader.GetString(8), reader.GetString(9));
                previous = AuditChain.Hash(previous, row);
                seals.Add((row.Id, row.Seq, previous));
            }
        }
        if (seals.Count == 0)
        {
            await transaction.RollbackAsync(cancellationToken);
            return 0;
        }
        await lease.WriteSealsAsync(transaction, seals, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        foreach (var s in seals) unanchored.Add(s.Hash);
        headHash = previous;
        Volatile.Write(ref headSeq, seq);
        return seals.Count;
    }

    async Task AnchorAsync(CancellationToken cancellationToken)
    {
        var from = lastAnchoredSeq + 1;
        var to = lastAnchoredSeq + unanchored.Count;
        await anchors.WriteAsync(from, to, time.GetUtcNow().UtcDateTime, unanchored.ToArray(), cancellationToken);
        unanchored.Clear();
        lastAnchorTime = time.GetUtcNow();
        Volatile.Write(ref lastAnchoredSeq, to);
        LogAnchored(from, to);
    }

    static void Parameter(DbCommand command, string name, object value)
    {
        var p = command.CreateParameter();
        p.ParameterName = name;
        p.Value = value;
        command.Parameters.Add(p);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Audit sealer leading: chain head seq {Seq}, anchored through {Anchored}")]
    partial void LogLeading(long seq, long anchored);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Audit chain anchored: seq {From}..{To}")]
    partial void LogAnchored(long from, long to);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Audit sealer lost its connection or leadership; retrying")]
    partial void LogSealerFailed(Exception exception);
}
