using System.Data;
using System.Data.Common;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Fleet.Coordinator.Audit;

/// <summary>
/// The provider-specific part of sealing: who may seal (one leader among replicas) and writing many
/// (seq, hash) pairs fast. PostgreSQL: a session advisory lock and one UPDATE … FROM unnest(…);
/// SQLite: the only process, an IMMEDIATE transaction and a prepared UPDATE.
/// </summary>
public interface IAuditSealStore
{
    /// <summary>A connection holding sealer leadership, or null when another replica holds it.</summary>
    Task<SealerLease?> TryLeadAsync(CancellationToken cancellationToken);
}

public abstract class SealerLease(DbConnection connection) : IAsyncDisposable
{
    public DbConnection Connection { get; } = connection;

    public abstract Task WriteSealsAsync(DbTransaction transaction, IReadOnlyList<(long Id, long Seq, byte[] Hash)> seals, CancellationToken cancellationToken);

    public virtual async ValueTask DisposeAsync()
    {
        await Connection.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}

sealed class PostgresAuditSealStore(IDbContextFactory<FleetDbContext> dbFactory) : IAuditSealStore
{
    // Arbitrary but fixed: the advisory lock every replica's sealer competes for.
    const long LockKey = 0x466C656574417564; // "FleetAud"

    public async Task<SealerLease?> TryLeadAsync(CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var connection = await AdvisoryLock.TryAcquireAsync(db.Database.GetConnectionString()!, LockKey, cancellationToken);
        return connection is null ? null : new Lease(connection);
    }

    sealed class Lease(NpgsqlConnection connection) : SealerLease(connection)
    {
        public override async Task WriteSealsAsync(DbTransaction transaction, IReadOnlyList<(long Id, long Seq, byte[] Hash)> seals, CancellationToken cancellationToken)
        {
            await using var command = new NpgsqlCommand("""
                UPDATE audit_events AS a SET "Seq" = v.seq, "Hash" = v.hash
                FROM unnest(@ids, @seqs, @hashes) AS v(id, seq, hash)
                WHERE a."Id" = v.id AND a."Seq" IS NULL
                """, connection, (NpgsqlTransaction)transaction);
            command.Parameters.AddWithValue("ids", seals.Select(s => s.Id).ToArray());
            command.Parameters.AddWithValue("seqs", seals.Select(s => s.Seq).ToArray());
            command.Parameters.AddWithValue("hashes", seals.Select(s => s.Hash).ToArray());
            var updated = await command.ExecuteNonQueryAsync(cancellationToken);
            if (updated != seals.Count)
                throw new DBConcurrencyException($"sealed {updated} of {seals.Count} audit rows: another sealer is running");
        }
    }
}

sealed class SqliteAuditSealStore(IDbContextFactory<FleetDbContext> dbFactory) : IAuditSealStore
{
    public async Task<SealerLease?> TryLeadAsync(CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var connection = new Microsoft.Data.Sqlite.SqliteConnection(db.Database.GetConnectionString());
        await connection.OpenAsync(cancellationToken);
        await using (var pragma = connection.CreateCommand())
        {
            pragma.CommandText = "PRAGMA busy_timeout=10000;";
            await pragma.ExecuteNonQueryAsync(cancellationToken);
        }
        return new Lease(connection);
    }

    sealed class Lease(DbConnection connection) : SealerLease(connection)
    {
        public override async Task WriteSealsAsync(DbTransaction transaction, IReadOnlyList<(long Id, long Seq, byte[] Hash)> seals, CancellationToken cancellationToken)
        {
            await using var command = Connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = """UPDATE audit_events SET "Seq" = $seq, "Hash" = $hash WHERE "Id" = $id AND "Seq" IS NULL""";
            var id = command.CreateParameter(); id.ParameterName = "$id"; command.Parameters.Add(id);
            var seq = command.CreateParameter(); seq.ParameterName = "$seq"; command.Parameters.Add(seq);
            var hash = command.CreateParameter(); hash.ParameterName = "$hash"; command.Parameters.Add(hash);
            await command.PrepareAsync(cancellationToken);
            foreach (var s in seals)
            {
                id.Value = s.Id; seq.Value = s.Seq; hash.Value = s.Hash;
                if (await command.ExecuteNonQueryAsync(cancellationToken) != 1)
                    throw new DBConcurrencyException($"audit row {s.Id} was sealed by someone else");
            }
        }
    }
}
