using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;

namespace Fleet.Coordinator.Storage;

/// <summary>
/// The one database context. Each feature owns its entities and their
/// <see cref="IEntityTypeConfiguration{TEntity}"/>; they are picked up from this assembly.
/// Two provider-specific subclasses carry their own migrations.
/// </summary>
public abstract class FleetDbContext(DbContextOptions options) : DbContext(options)
{
    public DbSet<Agents.AgentRecord> Agents => Set<Agents.AgentRecord>();
    public DbSet<Agents.ReceivedBatch> ReceivedBatches => Set<Agents.ReceivedBatch>();
    public DbSet<Agents.AgentEventRecord> AgentEvents => Set<Agents.AgentEventRecord>();
    public DbSet<Runs.RunRecord> Runs => Set<Runs.RunRecord>();
    public DbSet<Runs.InvocationRecord> Invocations => Set<Runs.InvocationRecord>();
    public DbSet<Runs.InvocationTransitionRecord> InvocationTransitions => Set<Runs.InvocationTransitionRecord>();
    public DbSet<Runs.InvocationOutputChunk> InvocationOutput => Set<Runs.InvocationOutputChunk>();
    public DbSet<Schedules.ScheduleRecord> Schedules => Set<Schedules.ScheduleRecord>();
    public DbSet<Schedules.OccurrenceRecord> ScheduleOccurrences => Set<Schedules.OccurrenceRecord>();
    public DbSet<Checklists.ChecklistSignOffRecord> ChecklistSignOffs => Set<Checklists.ChecklistSignOffRecord>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(FleetDbContext).Assembly,
            t => t.Namespace?.StartsWith("Fleet.Coordinator", StringComparison.Ordinal) == true);

    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder)
    {
        // Timestamps are stored as UTC and come back as DateTimeKind.Utc on both providers.
        configurationBuilder.Properties<DateTime>().HaveConversion<UtcDateTimeConverter>();
        configurationBuilder.Properties<DateTime?>().HaveConversion<NullableUtcDateTimeConverter>();
    }

    sealed class UtcDateTimeConverter() : ValueConverter<DateTime, DateTime>(
        v => v.Kind == DateTimeKind.Utc ? v : v.ToUniversalTime(),
        v => DateTime.SpecifyKind(v, DateTimeKind.Utc));

    sealed class NullableUtcDateTimeConverter() : ValueConverter<DateTime?, DateTime?>(
        v => v == null ? v : v.Value.Kind == DateTimeKind.Utc ? v : v.Value.ToUniversalTime(),
        v => v == null ? v : DateTime.SpecifyKind(v.Value, DateTimeKind.Utc));
}

/// <summary>PostgreSQL (production). Migrations in Storage/Migrations/Postgres.</summary>
public sealed class PostgresFleetDbContext(DbContextOptions<PostgresFleetDbContext> options) : FleetDbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        base.OnModelCreating(modelBuilder);
        // The identifier columns of the metric tables' keys compare bytewise: with the database's linguistic collation
        // every index comparison goes through strcoll, which made the sample insert take twice as long
        // (docs/benchmarks.md, metrics ingest).
        foreach (var entity in new[] { typeof(Metrics.MetricSampleRecord), typeof(Metrics.MetricRollupRecord) })
            foreach (var column in new[] { "AgentId", "Name", "Labels" })
                modelBuilder.Entity(entity).Property(column).UseCollation("C");
        // Raw samples arrive in time order, so a BRIN index serves the retention job's time-range delete at a fraction
        // of a B-tree's cost per inserted row.
        modelBuilder.Entity<Metrics.MetricSampleRecord>().HasIndex(m => m.Time).HasMethod("brin");
        // Full-text search of log messages (SearchLogs q): a GIN index on the expression the query uses.
        modelBuilder.Entity<Logs.LogEntryRecord>().HasIndex(e => e.Message).HasMethod("GIN").IsTsVectorExpressionIndex("simple")
            .HasDatabaseName(Logs.LogsIndexMerger.IndexName);
    }
}

/// <summary>SQLite (embedded default). Migrations in Storage/Migrations/Sqlite.</summary>
public sealed class SqliteFleetDbContext(DbContextOptions<SqliteFleetDbContext> options) : FleetDbContext(options);
