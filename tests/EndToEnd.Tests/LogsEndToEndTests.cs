using Fleet.EndToEnd.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;

namespace Fleet.EndToEnd.Tests;

/// <summary>Log shipping with real agent and coordinator processes on real PostgreSQL and Redis.</summary>
[Collection(LogsCollection.Name)]
public sealed partial class LogsEndToEndTests(LogsCoordinatorFixture fixture) : IAsyncLifetime
{
    CoordinatorProcess Coordinator => fixture.Coordinator;

    readonly TempDirectory dir = new();
    readonly List<IAsyncDisposable> processes = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var p in processes) await p.DisposeAsync();
        if (!Coordinator.IsRunning) await Coordinator.StartAsync(); // a failed outage test must not take the others down
        dir.Dispose();
    }

    [Fact]
    public async Task LinesWrittenAcrossAnAgentKill9_AndARotation_AreSearchableExactlyOnce()
    {
        var coordinator = Coordinator;
        var logs = dir.Combine("app-logs");
        Directory.CreateDirectory(logs);
        var log = Path.Combine(logs, "app.log");
        File.WriteAllText(log, "");
        var agent = AgentProcess.Start(dir.Combine("agent"), coordinator.GrpcUrl, new Dictionary<string, string> { ["role"] = "e2e" }, new AgentSetup
        {
            AgentId = "e2e-logs",
            Config = new Dictionary<string, object>
            {
                ["logs"] = new Dictionary<string, object>
                {
                    ["sources"] = new[] { new Dictionary<string, object> { ["name"] = "app", ["path"] = logs + "/*.log", ["startAt"] = "beginning" } },
                },
            },
        });
        processes.Add(agent);
        var api = new Protocol.V1.Logs.LogsClient(coordinator.Channel());
        async Task<List<string>> StoredAsync() =>
            [.. (await api.SearchLogsAsync(new SearchLogsRequest { Host = "e2e-logs", Q = "line", Limit = 5000, OldestFirst = true })).Entries.Select(e => e.Message)];

        await AppendAsync(log, 0, 200);
        await Eventually.UntilAsync(StoredAsync, s => s.Count > 0, "the first lines stored");
        await agent.KillAsync(); // mid-stream: some lines shipped and acked, others in flight or not read yet
        await AppendAsync(log, 200, 400);
        agent.Start();
        await Eventually.UntilAsync(StoredAsync, s => s.Count >= 400, "the lines written while the agent was down stored");

        File.Move(log, log + ".1"); // rotation by rename: the rest of the old file, then the new one
        await AppendAsync(log + ".1", 400, 450);
        await AppendAsync(log, 450, 500);

        var stored = await Eventually.UntilAsync(StoredAsync, s => s.Count >= 500, "every line stored", TimeSpan.FromSeconds(60));
        Assert.Equal(Enumerable.Range(0, 500).Select(i => $"line {i:D4} password=***").Order(), stored.Order());
    }

    AgentProcess StartAgent(AgentSetup setup)
    {
        var agent = AgentProcess.Start(dir.Combine(setup.AgentId!), Coordinator.GrpcUrl, new Dictionary<string, string> { ["role"] = "e2e" }, setup);
        processes.Add(agent);
        return agent;
    }

    string LogDirectory(string name) => Directory.CreateDirectory(dir.Combine(name)).FullName;

    static async Task AppendAsync(string path, int from, int to)
    {
        await using var writer = File.AppendText(path);
        for (var i = from; i < to; i++)
            await writer.WriteLineAsync($"line {i:D4} password=hunter{i}");
    }
}
