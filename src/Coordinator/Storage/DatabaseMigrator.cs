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
        var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
        if (pending.Count > 0)
        {
            LogMigrating(pending.Count, db.Database.ProviderName);
            await db.Database.MigrateAsync(cancellationToken);
        }
        LogReady(db.Database.ProviderName);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "Applying {Count} database migrations ({Provider})")]
    partial void LogMigrating(int count, string? provider);

    [LoggerMessage(Level = LogLevel.Information, Message = "Database ready ({Provider})")]
    partial void LogReady(string? provider);
}
