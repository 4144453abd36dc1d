using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using V1TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Coordinator.Tests.Runs;

/// <summary>Two coordinator replicas on one PostgreSQL and Redis: whichever drives runs, the Dispatch reaches the replica holding the agent.</summary>
public sealed class RunReplicaTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task RunCreatedOnA_ReachesAnAgentConnectedToB_AndCompletes()
    {
        var prefix = TestServices.UniqueName("runs") + ":";
        using var a = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString, redis: true).Fast().With("Fleet:Redis:KeyPrefix", prefix).With("Fleet:ReplicaId", "replica-a");
        using var b = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString, redis: true).Fast().With("Fleet:Redis:KeyPrefix", prefix).With("Fleet:ReplicaId", "replica-b");
        _ = a.Server;
        await using var onB = await FakeAgent.ConnectAsync(b, FakeAgent.NewId());
        Assert.Equal("replica-b", onB.Welcome.CoordinatorId);
        await using var alsoOnB = await FakeAgent.ConnectAsync(b, FakeAgent.NewId());

        var client = a.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(onB.Id, alsoOnB.Id));
        var dispatch = await onB.RunNextAsync(V1TaskStatus.Succeeded);
        Assert.Equal(run.Id, dispatch.RunId);
        await alsoOnB.RunNextAsync(V1TaskStatus.Succeeded);

        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Equal(2, done.Counts.Succeeded);
        // Exactly one replica drives runs.
        var leaders = new[] { a, b }.Count(f => ((Coordinator.Runs.RunEngine)f.Services.GetService(typeof(Coordinator.Runs.RunEngine))!).IsLeader);
        Assert.Equal(1, leaders);
    }
}
