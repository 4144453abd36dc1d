using System.Net;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Tests.Hosting;

public sealed class StartupTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task TwoCoordinators_StartingAtOnceOnAnEmptyPostgresDatabase_BothComeUp()
    {
        using var a = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString);
        using var b = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString);

        await Task.WhenAll(Task.Run(() => a.CreateClient()), Task.Run(() => b.CreateClient())).DefaultTimeout(TimeSpan.FromSeconds(60));

        foreach (var coordinator in new[] { a, b })
        {
            using var http = coordinator.CreateClient();
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
        }
        await using var db = a.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        Assert.Empty(await db.Database.GetPendingMigrationsAsync());
    }

    [Fact]
    public async Task Health_LivenessAndReadiness_OnSqliteWithRedis()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite, redis: true);
        using var http = coordinator.CreateClient();
        Assert.Equal("Healthy", await http.GetStringAsync("/healthz"));
        Assert.Equal("Healthy", await http.GetStringAsync("/readyz"));
    }

    [Fact]
    public void Sqlite_IsTheDefault_InTheDataDirectory_InWalMode()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite);
        using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        Assert.True(db.Database.IsSqlite());
        Assert.True(File.Exists(Path.Combine(coordinator.DataDirectory, "fleet.db")));
        db.Database.OpenConnection();
        using var command = db.Database.GetDbConnection().CreateCommand();
        command.CommandText = "PRAGMA journal_mode";
        Assert.Equal("wal", command.ExecuteScalar() as string);
    }

    [Theory]
    [InlineData("Fleet:Agents:HeartbeatTimeout", "00:00:05", "Fleet:Agents:HeartbeatTimeout")]
    [InlineData("Fleet:Agents:MaxMessageBytes", "10", "MaxMessageBytes")]
    [InlineData("Fleet:Listen:Address", "not-an-ip", "Fleet:Listen:Address")]
    [InlineData("Fleet:ReplicaId", "bad replica!", "Fleet:ReplicaId")]
    [InlineData("ConnectionStrings:Postgres", "Host=x;NoSuchKeyword=1", "ConnectionStrings:Postgres")]
    [InlineData("Fleet:Runs:EngineInterval", "00:00:00", "Fleet:Runs:EngineInterval")]
    [InlineData("Fleet:Runs:DefaultDeliveryTimeout", "-00:00:01", "Fleet:Runs:DefaultDeliveryTimeout")]
    [InlineData("Fleet:Runs:InlineOutputBytes", "10", "InlineOutputBytes")]
    [InlineData("Fleet:Logs:SearchCandidates", "0", "Fleet:Logs:SearchCandidates: '0'")]
    public void BadConfiguration_FailsStart_NamingTheKey(string key, string value, string named)
    {
        var error = CoordinatorFactory.StartFailure(() => new CoordinatorFactory(Store.Sqlite).With(key, value));
        var messages = string.Join(" | ", Flatten(error).Select(e => e.Message));
        Assert.True(messages.Contains(named, StringComparison.Ordinal), $"'{named}' is not named by the start failure:\n{error}");
    }

    static IEnumerable<Exception> Flatten(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            yield return x;
            if (x is AggregateException agg)
                foreach (var inner in agg.InnerExceptions.SelectMany(Flatten))
                    yield return inner;
        }
    }
}
