using System.Diagnostics;
using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Fleet.Coordinator.Tests.Runs;

/// <summary>A run over thousands of online hosts is dispatched with set-based updates, not per-host round trips.</summary>
public sealed class RunScaleTests(PostgresDatabase postgres, ITestOutputHelper output) : IClassFixture<PostgresDatabase>
{
    [Theory]
    [InlineData(Store.Postgres)]
    [InlineData(Store.Sqlite)]
    public async Task FiveThousandOnlineHosts_AreAllDispatched_SoonAfterCreateRun(Store store)
    {
        const int hosts = 5000;
        using var coordinator = new CoordinatorFactory(store, store == Store.Postgres ? postgres.ConnectionString : null).Fast();
        var tasks = "[" + new JsonFormatter(JsonFormatter.Settings.Default).Format(FakeAgent.Probe()) + "]";
        var presence = coordinator.Services.GetRequiredService<IAgentPresence>();
        var prefix = FakeAgent.NewId("scale");
        await using (var db = coordinator.Db())
        {
            for (var i = 0; i < hosts; i++)
            {
                var id = $"{prefix}-{i:D5}";
                db.Agents.Add(new AgentRecord { Id = id, Hostname = id, TagsJson = $$"""{"fleet":"{{prefix}}"}""", TasksJson = tasks, FirstSeen = DateTime.UtcNow, LastSeen = DateTime.UtcNow });
                await presence.MarkOnlineAsync(id, new PresenceEntry("elsewhere", "s", DateTime.UtcNow), TimeSpan.FromMinutes(5), CancellationToken.None);
            }
            await db.SaveChangesAsync();
        }
        var client = coordinator.Runs();
        var request = new CreateRunRequest { Task = "probe", Tags = { "fleet=" + prefix }, Parameters = { ["target"] = "a.org" } };

        var clock = Stopwatch.StartNew();
        var run = await client.CreateRunAsync(request);
        var created = clock.Elapsed;
        await Eventually.UntilAsync(async () => (await client.ListRunsAsync(new ListRunsRequest { Task = "probe" })).Runs.Single(r => r.Id == run.Id),
            r => r.Counts.Dispatched == hosts, "every host dispatched");
        output.WriteLine($"{store}: CreateRun {created.TotalMilliseconds:0} ms, all {hosts} dispatched after {clock.Elapsed.TotalMilliseconds:0} ms");
        // Well under a second on an idle machine; the bound leaves room for a loaded CI box.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
    }
}
