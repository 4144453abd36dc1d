using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace Fleet.Coordinator.Storage;

// Used only by `dotnet ef` to create and check migrations; no database is contacted.
sealed class PostgresDesignTimeFactory : IDesignTimeDbContextFactory<PostgresFleetDbContext>
{
    public PostgresFleetDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<PostgresFleetDbContext>().UseNpgsql("Host=localhost;Database=fleet_design").Options);
}

sealed class SqliteDesignTimeFactory : IDesignTimeDbContextFactory<SqliteFleetDbContext>
{
    public SqliteFleetDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<SqliteFleetDbContext>().UseSqlite("Data Source=fleet-design.db").Options);
}
