using Npgsql;
using Xunit;

namespace Fleet.Testing;

/// <summary>
/// A fresh PostgreSQL database for one test class, dropped when disposed.
/// Use as an xunit class fixture: <c>IClassFixture&lt;PostgresDatabase&gt;</c>.
/// </summary>
public sealed class PostgresDatabase : IAsyncLifetime
{
    public string Name { get; } = TestServices.UniqueName("fleet_test");

    public string ConnectionString => new NpgsqlConnectionStringBuilder(TestServices.PostgresAdmin) { Database = Name, Pooling = true }.ConnectionString;

    public async Task InitializeAsync()
    {
        await using var conn = new NpgsqlConnection(TestServices.PostgresAdmin);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand($"CREATE DATABASE \"{Name}\" TEMPLATE template0", conn);
        await cmd.ExecuteNonQueryAsync();
    }

    public async Task DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await using var conn = new NpgsqlConnection(TestServices.PostgresAdmin);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{Name}\" WITH (FORCE)", conn);
        await cmd.ExecuteNonQueryAsync();
    }
}
