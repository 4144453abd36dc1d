using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.Extensions.DependencyInjection;
using V1TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Coordinator.Tests.Runs;

/// <summary>Two coordinator replicas on one PostgreSQL and Redis: work for an agent reaches the replica holding its stream.</summary>
public sealed class RunReplicaTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    /// <summary>Replica A (which drives runs) and replica B (which holds the agents), sharing the database and Redis.</summary>
    async Task<(CoordinatorFactory A, CoordinatorFactory B)> ReplicasAsync()
    {
        var prefix = TestServices.UniqueName("runs") + ":";
        var a = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString, redis: true).Fast().With("Fleet:Redis:KeyPrefix", prefix).With("Fleet:ReplicaId", "replica-a");
        var engineA = a.Services.GetRequiredService<RunEngine>();
        await Eventually.UntilAsync(() => engineA.IsLeader, "replica A leads the run engine");
        var b = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString, redis: true).Fast().With("Fleet:Redis:KeyPrefix", prefix).With("Fleet:ReplicaId", "replica-b");
        _ = b.Server;
        return (a, b);
    }

    [Fact]
    public async Task RunCreatedOnA_ReachesAgentsConnectedToB_AndCompletes()
    {
        var (a, b) = await ReplicasAsync();
        using var _a = a;
        using var _b = b;
        await using var onB = await FakeAgent.ConnectAsync(b, FakeAgent.NewId());
        Assert.Equal("replica-b", onB.Welcome.CoordinatorId);
        await using var alsoOnB = await FakeAgent.ConnectAsync(b, FakeAgent.NewId());

        var client = a.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(onB.Id, alsoOnB.Id));
        var dispatch = await onB.RunNextAsync(V1TaskStatus.Succeeded); // sent by A's engine through B's Redis channel
        Assert.Equal(run.Id, dispatch.RunId);
        await alsoOnB.RunNextAsync(V1TaskStatus.Succeeded);

        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Equal(2, done.Counts.Succeeded);
        Assert.False(b.Services.GetRequiredService<RunEngine>().IsLeader); // exactly one replica drives runs
    }

    [Fact]
    public async Task CancelOnA_ReachesTheAgentOnB()
    {
        var (a, b) = await ReplicasAsync();
        using var _a = a;
        using var _b = b;
        await using var agent = await FakeAgent.ConnectAsync(b, FakeAgent.NewId());
        var client = a.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(agent.Id));
        var dispatch = await agent.NextDispatchAsync();
        await agent.SendAsync(FakeAgent.Started(dispatch.InvocationId));
        await client.WaitAsync(run.Id, r => r.Invocations[0].State == InvocationState.Running, "running");

        await client.CancelRunAsync(new CancelRunRequest { Id = run.Id });
        var cancel = (await agent.NextAsync(CoordinatorMessage.BodyOneofCase.Cancel)).Cancel;
        Assert.Equal(dispatch.InvocationId, cancel.InvocationId);
        await agent.SendAsync(FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Cancelled));
        Assert.Equal(RunStatus.Cancelled, (await client.FinishedAsync(run.Id)).Status);
    }
}
