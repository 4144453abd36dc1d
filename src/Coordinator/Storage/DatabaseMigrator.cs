using Fleet.Coordinator.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Storage;

/// <summary>
/// Applies pending migrations before the coordinator serves anything (hosted services start before
/// Kestrel accepts requests). EF Core takes a database-wide migration lock, so several replicas starting
/// at once on an empty database all come up.
/// </summary>
sealed partial class DatabaseMigrator(IDbContextFactory<FleetDbContext> factory, IOptions<FleetOptions> fleet, ILogger<DatabaseMigrator> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using var db = factory.CreateDbContext();
        if (db.Database.IsSqlite())
            Directory.CreateDirectory(Path.GetFullPath(fleet.Value.DataDirectory));
        // EF's own migration lock does not stop two replicas racing on PostgreSQL: hold a session advisory lock.
        await using var migrationLock = db.Database.IsNpgsql() ? await PostgresLock.AcquireAsync(db.Database.GetConnectionString()!, cancellationToken) : null;
        var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
        if (pending.Count > 0)
        {
            LogMigrating(pending.Count, db.Database.ProviderName);
            await db.Database.MigrateAsync(cancellationToken);
        }
        LogReady(db.Database.ProviderName);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    sealed class PostgresLock(Npgsql.NpgsqlConnection connection) : IAsyncDisposable
    {
        const long Key = 0x466C6565744D6967; // "FleetMig"

        public static async Task<PostgresLock> AcquireAsync(string connectionString, CancellationToken cancellationToken)
        {
            var connection = new Npgsql.NpgsqlConnection(connectionString);
            await connection.OpenAsync(cancellationToken);
            await using var command = new Npgsql.NpgsqlCommand("SELECT pg_advisory_lock(@key)", connection);
            command.Parameters.AddWithValue("key", Key);
            await command.ExecuteNonQueryAsync(cancellationToken);
            return new PostgresLock(connection);
        }

        public async ValueTask DisposeAsync()
        {
            await connection.DisposeAsync(); // closing the session releases the lock
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Applying {Count} database migrations ({Provider})")]
    partial void LogMigrating(int count, string? provider);

    [LoggerMessage(Level = LogLevel.Information, Message = "Database ready ({Provider})")]
    partial void LogReady(string? provider);
}
