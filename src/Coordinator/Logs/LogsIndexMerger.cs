using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Logs;

/// <summary>
/// PostgreSQL only: merges the pending list of the full-text index (ix_log_entries_message_fts, fastupdate with a
/// 32 MB gin_pending_list_limit, migration LogsFastGin) into the index every <see cref="LogsOptions.IndexMergeInterval"/>
/// with <c>gin_clean_pending_list</c>, on its own connection. Inserting transactions then only append to the list, and
/// the merge (the largest share of the insert's cost) runs beside them — on another core — with
/// maintenance_work_mem instead of work_mem. Entries in the pending list are searchable already (a search scans it),
/// so nothing waits for this; if it falls behind, the inserting backends merge as before once the list is full.
/// Concurrent merges (several replicas) are harmless: one waits for the other's lock.
/// </summary>
public sealed partial class LogsIndexMerger(
    IDbContextFactory<FleetDbContext> dbFactory,
    IOptions<LogsOptions> options,
    TimeProvider time,
    ILogger<LogsIndexMerger> logger) : BackgroundService
{
    public const string IndexName = "ix_log_entries_message_fts";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = options.Value.IndexMergeInterval;
        if (interval <= TimeSpan.Zero) return;
        await using (var probe = dbFactory.CreateDbContext())
            if (!probe.Database.IsNpgsql()) return;
        using var timer = new PeriodicTimer(interval, time);
        var failing = false;
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                var merged = await MergeOnceAsync(stoppingToken);
                if (merged > 0) LogMerged(merged);
                failing = false;
            }
            catch (Npgsql.PostgresException ex) when (ex.SqlState == Npgsql.PostgresErrorCodes.InsufficientPrivilege)
            {
                // Only the index's owner (or a superuser) may merge: with a DML-only role this never works, and inserting
                // transactions merge the (larger) pending list themselves. Say so once and stop trying.
                LogNotOwner(IndexName, ex.MessageText);
                return;
            }
            catch (Exception ex) when (ex is System.Data.Common.DbException or InvalidOperationException)
            {
                if (!failing) LogFailed(ex); // once per failure streak (the database down), not every second
                failing = true;
            }
        }
    }

    /// <summary>One merge; returns the number of pending-list pages merged (0 when the list was empty).</summary>
    public async Task<long> MergeOnceAsync(CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        await db.Database.OpenConnectionAsync(cancellationToken);
        await db.Database.ExecuteSqlRawAsync("SET maintenance_work_mem = '128MB'", cancellationToken);
        return await db.Database.SqlQueryRaw<long>(
            $"SELECT gin_clean_pending_list('{IndexName}'::regclass) AS \"Value\"").SingleAsync(cancellationToken);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Merged {Pages} pending-list pages into the log search index")]
    partial void LogMerged(long pages);

    [LoggerMessage(Level = LogLevel.Error, Message = "The coordinator's database role may not merge index {Index} ({Error}): log ingest merges it inline, slower. Run the coordinator as the role that owns the tables (the one that ran the migrations), or set Fleet:Logs:IndexMergeInterval to 0")]
    partial void LogNotOwner(string index, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not merge the log search index's pending list; retrying every interval")]
    partial void LogFailed(Exception exception);
}
