using Fleet.Agent.Probes;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Npgsql;

namespace Fleet.Agent.Tests.Probes;

public sealed class PostgresProbeTests
{
    static ProbeSettings Postgres(string connectionString) => new() { Name = "db", Kind = ProbeKinds.Postgres, ConnectionString = connectionString };

    [Fact]
    public async Task Postgres_IsOk_WithLatency_AgainstARunningServer()
    {
        var harness = new NpgsqlConnectionStringBuilder(TestServices.PostgresAdmin);

        var result = await ProbeTesting.RunOnceAsync(Postgres(TestServices.PostgresAdmin));

        Assert.True(result.Ok, result.Reason);
        Assert.Equal($"{harness.Host}:{harness.Port}/{harness.Database}", result.Target);
        Assert.True(result.LatencyMs > 0);
        Assert.DoesNotContain(harness.Password!, result.Target, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Postgres_Fails_WithConnectionRefused_WhenTheServerIsStopped_AndThePasswordAppearsNowhere()
    {
        const string password = "Sup3r-Secret-Pg-Pw";
        var port = ProbeTesting.ClosedPort();
        var settings = Postgres($"Host=127.0.0.1;Port={port};Username=monitor;Password={password};Database=orders");
        var logger = new CapturingLogger<ProbeRunner>();
        var results = new List<ProbeResult>();
        using var stop = new CancellationTokenSource();
        var probe = ProbeTesting.Create(settings);
        var runner = new ProbeRunner(probe, settings.Interval, (result, _) =>
        {
            results.Add(result);
            stop.Cancel();
            return ValueTask.CompletedTask;
        }, TimeProvider.System, logger);

        await runner.RunAsync(stop.Token).DefaultTimeout();
        await ((IAsyncDisposable)probe).DisposeAsync();

        var failed = Assert.Single(results);
        Assert.False(failed.Ok);
        Assert.Contains("connection refused", failed.Reason, StringComparison.Ordinal);
        Assert.Equal($"127.0.0.1:{port}/orders", failed.Target);
        Assert.Contains("connection refused", logger.All, StringComparison.Ordinal);
        foreach (var text in new[] { failed.ToString(), probe.Target, logger.All, settings.ToString() })
            Assert.DoesNotContain(password, text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Postgres_Fails_WithTheServerError_ForAWrongPassword_WithoutRevealingIt()
    {
        const string wrong = "Wr0ng-Pg-Passw0rd";
        var connection = new NpgsqlConnectionStringBuilder(TestServices.PostgresAdmin) { Password = wrong };

        var result = await ProbeTesting.RunOnceAsync(Postgres(connection.ConnectionString));

        Assert.False(result.Ok);
        Assert.StartsWith("28P01:", result.Reason, StringComparison.Ordinal);
        Assert.DoesNotContain(wrong, result.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Postgres_Settings_WithAnInvalidConnectionString_AreRejected_NamingTheKey()
    {
        var error = Assert.Throws<ArgumentException>(() => ProbeTesting.Create(Postgres("Host=db;Port=notanumber;Password=Secret-Xyz")));

        Assert.Contains("connectionString", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Secret-Xyz", error.Message, StringComparison.Ordinal);
    }
}
