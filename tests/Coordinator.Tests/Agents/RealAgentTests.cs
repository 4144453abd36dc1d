using Fleet.Agent;
using Fleet.Agent.Configuration;
using Fleet.Agent.Outbox;
using Fleet.Agent.Transport;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Fleet.Coordinator.Tests.Agents;

/// <summary>The real agent parts (config, identity, outbox, transport) against the in-process coordinator.</summary>
public sealed class RealAgentTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    public static TheoryData<Store> Stores => new() { Store.Sqlite, Store.Postgres };

    static IHost StartAgent(CoordinatorFactory coordinator, TempDirectory state, Dictionary<string, string>? tags = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddLogging();
        builder.Services.AddFleetAgent(new AgentOptions
        {
            Coordinator = coordinator.Server.BaseAddress,
            StateDirectory = state.Path,
            Tags = tags ?? new() { ["role"] = "db" },
            HeartbeatInterval = TimeSpan.FromMilliseconds(200),
        }, coordinator.AgentHandler);
        var host = builder.Build();
        host.Start();
        return host;
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Agent_Registers_ItsStartedEventIsStored_AndItsOutboxDrains(Store store)
    {
        using var coordinator = new CoordinatorFactory(store, store == Store.Postgres ? postgres.ConnectionString : null);
        using var state = new TempDirectory();
        using var agent = StartAgent(coordinator, state);
        var connection = agent.Services.GetRequiredService<CoordinatorConnection>();
        var outbox = agent.Services.GetRequiredService<DurableOutbox>();
        var agentId = File.ReadAllText(state.Combine("agent-id"));

        await Eventually.UntilAsync(() => connection.State == ConnectionState.Connected, "the agent to connect");
        var api = new Protocol.V1.Agents.AgentsClient(coordinator.Channel());
        var listed = await api.ListAgentsAsync(new ListAgentsRequest { Status = AgentStatus.Online });
        var me = Assert.Single(listed.Agents, a => a.Id == agentId);
        Assert.Equal("db", me.Tags["role"]);
        Assert.Equal(File.ReadAllText("/proc/sys/kernel/osrelease").Trim(), me.Kernel);

        await Eventually.UntilAsync(() => outbox.PendingRecords == 0, "the outbox to drain after acks");
        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        var started = await db.AgentEvents.SingleAsync(e => e.AgentId == agentId);
        Assert.Equal("agent.started", started.Kind);
        Assert.Equal(unchecked((long)outbox.Epoch), started.Epoch);

        await agent.StopAsync();
        await Eventually.UntilAsync(async () => (await api.GetAgentAsync(new GetAgentRequest { Id = agentId })).Status == AgentStatus.Offline,
            "the agent to be offline right after a clean stop");
    }

    [Fact]
    public async Task RestartedAgent_KeepsItsId_AndEachStartIsStoredOnce()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite);
        using var state = new TempDirectory();
        string agentId;
        for (var run = 0; run < 3; run++)
        {
            using var agent = StartAgent(coordinator, state);
            agentId = File.ReadAllText(state.Combine("agent-id"));
            var outbox = agent.Services.GetRequiredService<DurableOutbox>();
            await Eventually.UntilAsync(() => outbox.PendingRecords == 0 && agent.Services.GetRequiredService<CoordinatorConnection>().State == ConnectionState.Connected, "the agent to connect and drain");
            await agent.StopAsync();
        }

        agentId = File.ReadAllText(state.Combine("agent-id"));
        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        Assert.Equal(1, await db.Agents.CountAsync(a => a.Id == agentId));
        Assert.Equal(3, await db.AgentEvents.CountAsync(e => e.AgentId == agentId && e.Kind == "agent.started"));
    }

    [Fact]
    public async Task WrongCoordinatorAddress_IsRetried_NeverCrashes()
    {
        using var state = new TempDirectory();
        var port = FreePort.Next();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddLogging();
        builder.Services.AddFleetAgent(new AgentOptions
        {
            Coordinator = new Uri($"http://127.0.0.1:{port}"),
            StateDirectory = state.Path,
            ReconnectInitialDelay = TimeSpan.FromMilliseconds(20),
            ReconnectMaxDelay = TimeSpan.FromMilliseconds(100),
        });
        using var agent = builder.Build();
        await agent.StartAsync();
        var connection = agent.Services.GetRequiredService<CoordinatorConnection>();

        await Eventually.UntilAsync(() => connection.State == ConnectionState.Disconnected, "the first failed attempt");
        var outbox = agent.Services.GetRequiredService<DurableOutbox>();
        Assert.Equal(1, outbox.PendingRecords); // agent.started waits durably for the coordinator
        await agent.StopAsync();
        Assert.Equal(ConnectionState.Stopped, connection.State);
    }
}
