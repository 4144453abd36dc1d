using Fleet.EndToEnd.Tests.Infrastructure;
using Fleet.Testing;

namespace Fleet.EndToEnd.Tests;

public sealed class EmbeddedModeTests : IAsyncLifetime
{
    readonly TempDirectory dir = new();
    CoordinatorProcess? coordinator;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (coordinator is not null) await coordinator.DisposeAsync();
        dir.Dispose();
    }

    [Fact]
    public async Task Coordinator_WithNoConfiguration_ListsThisHostOnline()
    {
        // Only the ports differ from a newcomer's `dotnet run` (tests never bind 5080/5081); the data directory is ./fleet-data.
        coordinator = await CoordinatorProcess.StartAsync([], dir.Path);

        var statuses = await Eventually.UntilAsync(coordinator.AgentStatusesAsync, s => s.ContainsValue("AGENT_STATUS_ONLINE"), "the local host online", TimeSpan.FromSeconds(30));

        var id = Assert.Single(statuses.Keys);
        var show = await Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "agents", "show", id);
        Assert.Equal(0, show.ExitCode);
        Assert.Contains(Environment.MachineName.ToLowerInvariant(), show.Stdout);
        Assert.True(File.Exists(Path.Combine(dir.Path, "fleet-data", "fleet.db")));
        Assert.True(File.Exists(Path.Combine(dir.Path, "fleet-data", "agent", "agent-id")));
    }

    [Fact]
    public async Task AuditTrail_RecordsTheLocalAgent_AndVerifiesThroughFleetctl()
    {
        coordinator = await CoordinatorProcess.StartAsync(new() { ["Fleet:Audit:AnchorInterval"] = "00:00:01" }, dir.Path);
        await Eventually.UntilAsync(coordinator.AgentStatusesAsync, s => s.ContainsValue("AGENT_STATUS_ONLINE"), "the local host online", TimeSpan.FromSeconds(30));

        var list = await Eventually.UntilAsync(() => Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "audit", "list", "--action", "agent.connected", "--json"),
            r => r.ExitCode == 0 && r.Stdout.Contains("agent.connected", StringComparison.Ordinal), "the agent's connection in the audit trail");
        Assert.Contains("\"actorKind\": \"agent\"", list.Stdout.Replace("\":\"", "\": \"", StringComparison.Ordinal));

        var verify = await Eventually.UntilAsync(() => Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "audit", "verify"),
            r => r.ExitCode == 0 && r.Stdout.Contains("audit chain OK", StringComparison.Ordinal) && r.Stdout.Contains(", 0 rows not yet sealed", StringComparison.Ordinal),
            "a sealed, verified chain");
        Assert.Contains("anchor", verify.Stdout);
        Assert.True(File.Exists(Path.Combine(dir.Path, "fleet-data", "audit-anchor.key")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir.Path, "fleet-data", "audit-anchor.key")));
    }

    [Fact]
    public async Task Overview_ShowsThisHostsCpuAndMemory()
    {
        coordinator = await CoordinatorProcess.StartAsync(new() { ["Fleet:EmbeddedAgent:MetricsInterval"] = "00:00:01" }, dir.Path);

        using var http = new HttpClient();
        var host = await Eventually.UntilAsync(async () =>
        {
            using var doc = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync($"{coordinator.RestUrl}/api/v1/metrics/latest"));
            return doc.RootElement.GetProperty("hosts").EnumerateArray().Select(h => h.Clone()).SingleOrDefault();
        }, h => h.ValueKind == System.Text.Json.JsonValueKind.Object && h.TryGetProperty("samples", out var s)
                && s.EnumerateArray().Any(x => x.GetProperty("name").GetString() == "cpu.usage")
                && s.EnumerateArray().Any(x => x.GetProperty("name").GetString() == "memory.used_ratio"),
            "this host's cpu.usage and memory.used_ratio in the overview", TimeSpan.FromSeconds(45));

        Assert.Equal(Environment.MachineName.ToLowerInvariant(), host.GetProperty("hostname").GetString());
        var memory = host.GetProperty("samples").EnumerateArray().First(x => x.GetProperty("name").GetString() == "memory.used_ratio").GetProperty("value").GetDouble();
        Assert.InRange(memory, 0.0, 1.0);
        var prometheus = await http.GetStringAsync($"{coordinator.RestUrl}/metrics");
        Assert.Contains("fleet_host_memory_used_ratio{", prometheus);
    }

    [Fact]
    public async Task HealthCheck_OnThisHost_ThroughFleetctl_Succeeds()
    {
        coordinator = await CoordinatorProcess.StartAsync([], dir.Path);
        var statuses = await Eventually.UntilAsync(coordinator.AgentStatusesAsync, s => s.ContainsValue("AGENT_STATUS_ONLINE"), "the local host online", TimeSpan.FromSeconds(30));
        var id = Assert.Single(statuses.Keys);

        var run = await Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "run", "health.check", "--host", id, "--wait");

        Assert.True(run.ExitCode == 0, run.Stdout + run.Stderr);
        Assert.Contains("1 probes ok", run.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("\u001b[", run.Stdout, StringComparison.Ordinal); // redirected: no terminal escapes
    }

    [Fact]
    public async Task LogLine_WrittenToAConfiguredSource_IsSearchableThroughFleetctl()
    {
        var logs = Directory.CreateDirectory(dir.Combine("app-logs")).FullName;
        coordinator = await CoordinatorProcess.StartAsync(new()
        {
            ["Fleet:EmbeddedAgent:Logs:Sources:0:Name"] = "app",
            ["Fleet:EmbeddedAgent:Logs:Sources:0:Path"] = logs + "/*.log",
            ["Fleet:EmbeddedAgent:Logs:Sources:0:StartAt"] = "beginning",
        }, dir.Path);
        await Eventually.UntilAsync(coordinator.AgentStatusesAsync, s => s.ContainsValue("AGENT_STATUS_ONLINE"), "the local host online", TimeSpan.FromSeconds(30));

        File.AppendAllText(Path.Combine(logs, "error.log"), "2026-11-28T22:01:02Z ERROR Failed password for root from 203.0.113.9 password=hunter2\n");

        var found = await Eventually.UntilAsync(
            () => Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "logs", "--q", "Failed password", "--source", "error.log", "--since", "720h", "--json"),
            r => r.ExitCode == 0 && r.Stdout.Contains("Failed password", StringComparison.Ordinal), "the line found through fleetctl logs", TimeSpan.FromSeconds(30));
        Assert.Contains("ERROR Failed password for root from 203.0.113.9 password=***", found.Stdout, StringComparison.Ordinal);
        Assert.Contains("2026-11-28T22:01:02", found.Stdout, StringComparison.Ordinal); // the time parsed from the line
        Assert.DoesNotContain("hunter2", found.Stdout, StringComparison.Ordinal);
    }
}
