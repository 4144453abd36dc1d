using System.Data.Common;
using Fleet.Coordinator.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Coordinator.Storage;

public static class StorageExtensions
{
    public static StorageProvider Provider(this IConfiguration configuration) =>
        string.IsNullOrWhiteSpace(configuration.GetConnectionString("Postgres")) ? StorageProvider.Sqlite : StorageProvider.Postgres;

    public static WebApplicationBuilder AddStorage(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<StorageOptions>().BindConfiguration(StorageOptions.Section).ValidateOnStart();
        var configuration = builder.Configuration;
        if (configuration.Provider() == StorageProvider.Postgres)
        {
            var connectionString = configuration.GetConnectionString("Postgres")!;
            try { _ = new NpgsqlConnectionStringBuilder(connectionString); }
            catch (ArgumentException ex)
            {
                throw new OptionsValidationException("ConnectionStrings:Postgres", typeof(StorageOptions),
                    [$"ConnectionStrings:Postgres is not a valid PostgreSQL connection string: {ex.Message}"]);
            }
            builder.Services.AddPooledDbContextFactory<PostgresFleetDbContext>(o => o.UseNpgsql(connectionString));
            builder.Services.AddSingleton<IDbContextFactory<FleetDbContext>, Factory<PostgresFleetDbContext>>();
        }
        else
        {
            builder.Services.AddPooledDbContextFactory<SqliteFleetDbContext>((sp, o) =>
            {
                var fleet = sp.GetRequiredService<IOptions<FleetOptions>>().Value;
                var storage = sp.GetRequiredService<IOptions<StorageOptions>>().Value;
                o.UseSqlite(SqliteConnectionString(fleet.DataDirectory))
                 .AddInterceptors(new SqlitePragmas(storage.SqliteBusyTimeout));
            });
            builder.Services.AddSingleton<IDbContextFactory<FleetDbContext>, Factory<SqliteFleetDbContext>>();
        }
        builder.Services.AddScoped(sp => sp.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext());
        builder.Services.AddHostedService<DatabaseMigrator>();
        builder.Services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database", tags: ["ready"]);
        return builder;
    }

    public static string SqliteConnectionString(string dataDirectory) =>
        new SqliteConnectionStringBuilder
        {
            DataSource = Path.Combine(Path.GetFullPath(dataDirectory), "fleet.db"),
            Cache = SqliteCacheMode.Private,
            Pooling = true,
        }.ToString();

    sealed class Factory<TContext>(IDbContextFactory<TContext> inner) : IDbContextFactory<FleetDbContext>
        where TContext : FleetDbContext
    {
        public FleetDbContext CreateDbContext() => inner.CreateDbContext();
    }

    /// <summary>WAL journal, a busy timeout and foreign keys on every SQLite connection.</summary>
    sealed class SqlitePragmas(TimeSpan busyTimeout) : DbConnectionInterceptor
    {
        public override void ConnectionOpened(DbConnection connection, ConnectionEndEventData eventData) => Apply(connection);

        public override Task ConnectionOpenedAsync(DbConnection connection, ConnectionEndEventData eventData, CancellationToken cancellationToken = default)
        {
            Apply(connection);
            return Task.CompletedTask;
        }

        void Apply(DbConnection connection)
        {
            using var command = connection.CreateCommand();
            command.CommandText = $"PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout={(int)busyTimeout.TotalMilliseconds};";
            command.ExecuteNonQuery();
        }
    }

    sealed class DatabaseHealthCheck(IDbContextFactory<FleetDbContext> factory) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            await using var db = factory.CreateDbContext();
            return await db.Database.CanConnectAsync(cancellationToken)
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy("database unreachable");
        }
    }
}
