using System.Text.Json;
using Fleet.EndToEnd.Tests.Infrastructure;
using Fleet.Testing;

namespace Fleet.EndToEnd.Tests;

/// <summary>Real coordinator and agent processes over loopback gRPC, on real PostgreSQL and Redis.</summary>
public sealed class FleetEndToEndTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>, IAsyncLifetime
{
    readonly TempDirectory dir = new();
    readonly List<IAsyncDisposable> processes = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var p in processes) await p.DisposeAsync();
        dir.Dispose();
    }

    async Task<CoordinatorProcess> StartCoordinatorAsync()
    {
        var coordinator = await CoordinatorProcess.StartOnPostgresAsync(postgres, dir);
        processes.Add(coordinator);
        return coordinator;
    }

    AgentProcess StartAgent(CoordinatorProcess coordinator, string name, string role)
    {
        var agent = AgentProcess.Start(dir.Combine(name), coordinator.GrpcUrl, new Dictionary<string, string> { ["role"] = role });
        processes.Add(agent);
        return agent;
    }

    static Task<Dictionary<string, string>> WaitForStatusesAsync(CoordinatorProcess coordinator, Func<Dictionary<string, string>, bool> done, string what) =>
        Eventually.UntilAsync(coordinator.AgentStatusesAsync, done, what, TimeSpan.FromSeconds(30));

    [Fact]
    public async Task TwoAgents_AreOnline_InRestAndFleetctl_AndAKilledAgentGoesOffline()
    {
        var coordinator = await StartCoordinatorAsync();
        var web = StartAgent(coordinator, "web", "web");
        var db = StartAgent(coordinator, "db", "db");
        await web.WaitForIdAsync();
        await db.WaitForIdAsync();
        Assert.NotEqual(web.AgentId, db.AgentId);

        await WaitForStatusesAsync(coordinator,
            s => s.GetValueOrDefault(web.AgentId) == "AGENT_STATUS_ONLINE" && s.GetValueOrDefault(db.AgentId) == "AGENT_STATUS_ONLINE",
            "both agents online");

        var list = await Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "agents", "list", "--json");
        Assert.Equal(0, list.ExitCode);
        using (var json = JsonDocument.Parse(list.Stdout))
        {
            var agents = json.RootElement.GetProperty("agents").EnumerateArray().ToList();
            Assert.Contains(agents, a => a.GetProperty("id").GetString() == web.AgentId && a.GetProperty("status").GetString() == "AGENT_STATUS_ONLINE");
            Assert.Contains(agents, a => a.GetProperty("id").GetString() == db.AgentId && a.GetProperty("tags").GetProperty("role").GetString() == "db");
        }
        var table = await Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "agents", "list");
        Assert.Equal(0, table.ExitCode);
        Assert.Contains(web.AgentId, table.Stdout);

        await db.Process.KillAsync();
        await WaitForStatusesAsync(coordinator,
            s => s.GetValueOrDefault(db.AgentId) == "AGENT_STATUS_OFFLINE" && s.GetValueOrDefault(web.AgentId) == "AGENT_STATUS_ONLINE",
            "the killed agent offline and the other still online");
    }

    [Fact]
    public async Task CoordinatorRestart_AgentsReconnectOnTheirOwn()
    {
        var coordinator = await StartCoordinatorAsync();
        var a = StartAgent(coordinator, "a", "web");
        var b = StartAgent(coordinator, "b", "web");
        await a.WaitForIdAsync();
        await b.WaitForIdAsync();
        await WaitForStatusesAsync(coordinator, s => s.Count(kv => kv.Value == "AGENT_STATUS_ONLINE") == 2, "both agents online");

        await coordinator.RestartAsync();

        await WaitForStatusesAsync(coordinator,
            s => s.GetValueOrDefault(a.AgentId) == "AGENT_STATUS_ONLINE" && s.GetValueOrDefault(b.AgentId) == "AGENT_STATUS_ONLINE",
            "both agents back online after the coordinator restart");
        Assert.False(a.Process.HasExited);
        Assert.False(b.Process.HasExited);
    }

    [Fact]
    public async Task RestartedAgent_ComesBackWithTheSameId_AndStopsCleanlyOnSigterm()
    {
        var coordinator = await StartCoordinatorAsync();
        var agent = StartAgent(coordinator, "web", "web");
        await agent.WaitForIdAsync();
        var id = agent.AgentId;
        var known = (await WaitForStatusesAsync(coordinator, s => s.GetValueOrDefault(id) == "AGENT_STATUS_ONLINE", "the agent online")).Count;

        Assert.Equal(0, await agent.Process.TerminateAsync());
        await WaitForStatusesAsync(coordinator, s => s.GetValueOrDefault(id) == "AGENT_STATUS_OFFLINE", "the stopped agent offline");

        agent.Start();
        await WaitForStatusesAsync(coordinator, s => s.Count == known && s.GetValueOrDefault(id) == "AGENT_STATUS_ONLINE", "the same agent id online again, and no second agent");
        Assert.Equal(id, agent.AgentId);
    }

    [Fact]
    public async Task Agent_WithAnUnreachableCoordinator_LogsTheAddressOnce_AndKeepsRunning()
    {
        var port = FreePort.Next();
        var agent = AgentProcess.Start(dir.Combine("lonely"), $"http://127.0.0.1:{port}", new Dictionary<string, string>());
        processes.Add(agent);

        await Eventually.UntilAsync(() => agent.Process.Output.Contains($"cannot reach the coordinator at http://127.0.0.1:{port}/", StringComparison.Ordinal),
            "the agent to log the unreachable address\n" + agent.Process.Output);
        // Several retries later (reconnectMaxSeconds is 2) the same problem is still logged only once.
        await Eventually.UntilAsync(() => agent.Process.Output.Contains("Connecting", StringComparison.Ordinal), "start log");
        var before = CountOf(agent.Process.Output, "cannot reach the coordinator");
        Assert.Equal(1, before);
        Assert.False(agent.Process.HasExited);
    }

    [Fact]
    public async Task Agent_WithABadConfig_ExitsAtStart_NamingTheKey()
    {
        var path = dir.Combine("bad.json");
        await File.WriteAllTextAsync(path, """{ "coordinator": "http://127.0.0.1:1", "heartbeatSecs": 3 }""");
        await using var agent = ChildProcess.StartDotnet("agent", RepoPaths.Agent, ["--config", path]);
        Assert.Equal(2, await agent.WaitForExitAsync());
        Assert.Contains("unknown key 'heartbeatSecs'", agent.Output);
        Assert.DoesNotContain("   at ", agent.Output);
    }

    [Fact]
    public async Task Fleetctl_WithNoCoordinator_PrintsOneLineAndFails()
    {
        var port = FreePort.Next();
        var result = await Fleetctl.RunAsync("--coordinator", $"http://127.0.0.1:{port}", "agents", "list");
        Assert.NotEqual(0, result.ExitCode);
        var line = Assert.Single(result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"127.0.0.1:{port}", line);
    }

    static int CountOf(string text, string part)
    {
        var count = 0;
        for (var i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + part.Length, StringComparison.Ordinal)) count++;
        return count;
    }
}
