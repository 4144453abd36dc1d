using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;

namespace Fleet.Coordinator.Tests.Agents;

/// <summary>Two coordinator replicas sharing PostgreSQL and Redis: no agent state lives only in one process.</summary>
public sealed class ReplicaTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task AgentHeldByReplicaA_IsOnlineOnReplicaB_AndRemovalOnBClosesItsStreamOnA()
    {
        var prefix = TestServices.UniqueName("replicas") + ":";
        using var a = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString, redis: true).With("Fleet:Redis:KeyPrefix", prefix).With("Fleet:ReplicaId", "replica-a");
        using var b = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString, redis: true).With("Fleet:Redis:KeyPrefix", prefix).With("Fleet:ReplicaId", "replica-b");
        var id = "agent-" + Guid.NewGuid().ToString("N")[..12];
        await using var stream = RawAgentStream.Open(a.Channel());
        var welcome = await stream.HelloAsync(RawAgentStream.Hello(id));
        Assert.Equal("replica-a", welcome.CoordinatorId);

        var onB = new Protocol.V1.Agents.AgentsClient(b.Channel());
        var seen = await onB.GetAgentAsync(new GetAgentRequest { Id = id });
        Assert.Equal(AgentStatus.Online, seen.Status);
        Assert.Equal("replica-a", seen.Replica);

        var removed = await onB.RemoveAgentAsync(new RemoveAgentRequest { Id = id });
        Assert.True(removed.Disconnected);
        await stream.FinalStatusAsync(); // replica A closed the stream on B's request
        var onA = new Protocol.V1.Agents.AgentsClient(a.Channel());
        var listed = await onA.ListAgentsAsync(new ListAgentsRequest());
        Assert.DoesNotContain(listed.Agents, x => x.Id == id);
    }

    [Fact]
    public async Task StreamOnAReplica_ThatStops_ShowsOfflineOnTheOther()
    {
        var prefix = TestServices.UniqueName("replicas") + ":";
        using var a = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString, redis: true).With("Fleet:Redis:KeyPrefix", prefix);
        using var b = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString, redis: true).With("Fleet:Redis:KeyPrefix", prefix);
        var id = "agent-" + Guid.NewGuid().ToString("N")[..12];
        var onB = new Protocol.V1.Agents.AgentsClient(b.Channel());
        await using (var stream = RawAgentStream.Open(a.Channel()))
        {
            await stream.HelloAsync(RawAgentStream.Hello(id));
            Assert.Equal(AgentStatus.Online, (await onB.GetAgentAsync(new GetAgentRequest { Id = id })).Status);
            await stream.CompleteAsync();
            await stream.FinalStatusAsync();
        }
        await Eventually.UntilAsync(async () => (await onB.GetAgentAsync(new GetAgentRequest { Id = id })).Status == AgentStatus.Offline, "offline on the other replica");
    }
}
