using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using V1 = Fleet.Protocol.V1;

namespace Fleet.Coordinator.Tests.Runs;

static class RunsTestKit
{
    public static CoordinatorFactory Fast(this CoordinatorFactory factory) =>
        factory.With("Fleet:Runs:EngineInterval", "00:00:00.050").With("Fleet:Runs:WatchInterval", "00:00:00.050");

    public static TheoryData<Store> Stores => new() { Store.Sqlite, Store.Postgres };

    /// <summary>A fast-ticking coordinator on <paramref name="store"/> (this fixture's database when PostgreSQL).</summary>
    public static CoordinatorFactory Coordinator(this PostgresDatabase postgres, Store store) =>
        new CoordinatorFactory(store, store == Store.Postgres ? postgres.ConnectionString : null).Fast();

    public static V1.Runs.RunsClient Runs(this CoordinatorFactory factory, string user = "alice") => new(factory.Channel(user));

    public static FleetDbContext Db(this CoordinatorFactory factory) =>
        factory.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();

    public static CreateRunRequest Probe(params string[] hosts)
    {
        var request = new CreateRunRequest { Task = "probe", Parameters = { ["target"] = "example.org" } };
        request.Hosts.AddRange(hosts);
        return request;
    }

    public static Task<Run> WaitAsync(this V1.Runs.RunsClient client, string runId, Func<Run, bool> done, string what, TimeSpan? timeout = null) =>
        Eventually.UntilAsync(async () => await client.GetRunAsync(new GetRunRequest { Id = runId }), done, what, timeout);

    public static Task<Run> FinishedAsync(this V1.Runs.RunsClient client, string runId) =>
        client.WaitAsync(runId, r => r.Status != RunStatus.InProgress, $"run {runId} to finish");

    public static Invocation On(this Run run, FakeAgent agent) => run.Invocations.Single(i => i.AgentId == agent.Id);
}
