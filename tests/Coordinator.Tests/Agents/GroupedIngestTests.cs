using Fleet.Coordinator.Metrics;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Coordinator.Tests.Agents;

/// <summary>Batches from many streams share transactions; each still gets its own exact answer.</summary>
public sealed class GroupedIngestTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    static Batch Metrics(ulong counter, double value, long ms) => new()
    {
        Key = new BatchKey { Epoch = 5, Counter = counter },
        Metrics = new MetricBatch { Samples = { new MetricSample { Name = "cpu.usage", Value = value, TimeUnixMs = ms } } },
    };

    [Fact]
    public async Task ManyStreamsAtOnce_WithOneMalformedBatch_GoodOnesStoredOnce_BadOneRejected()
    {
        using var coordinator = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString);
        var run = Guid.NewGuid().ToString("N")[..8];
        var streams = new List<(string Id, RawAgentStream Stream)>();
        for (var i = 0; i < 40; i++)
        {
            var id = $"grp-{run}-{i:D2}";
            var stream = RawAgentStream.Open(coordinator.Channel());
            await stream.HelloAsync(RawAgentStream.Hello(id, epoch: 5));
            streams.Add((id, stream));
        }
        var ms = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        var replies = await Task.WhenAll(streams.Select(async (s, i) =>
        {
            await s.Stream.SendAsync(new AgentMessage { Batch = Metrics(1, i == 17 ? double.NaN : i / 100.0, ms) });
            return await s.Stream.ReceiveAsync();
        }));

        Assert.Equal(CoordinatorMessage.BodyOneofCase.Reject, replies[17].BodyCase);
        Assert.Equal(39, replies.Count(r => r.BodyCase == CoordinatorMessage.BodyOneofCase.Ack));
        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        var stored = await db.Set<MetricSampleRecord>().Where(m => m.AgentId.StartsWith($"grp-{run}-")).Select(m => m.AgentId).ToListAsync();
        Assert.Equal(39, stored.Count);
        Assert.DoesNotContain($"grp-{run}-17", stored);
        foreach (var (_, stream) in streams) await stream.DisposeAsync();
    }

    [Fact]
    public async Task SameBatchSentTwiceBackToBack_IsStoredOnce_AndAckedTwice()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite);
        var id = "dup-" + Guid.NewGuid().ToString("N")[..8];
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id, epoch: 5));
        var ms = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var batch = Metrics(9, 0.5, ms);
        await stream.SendAsync(new AgentMessage { Batch = batch });
        await stream.SendAsync(new AgentMessage { Batch = batch });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);

        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        Assert.Equal(1, await db.Set<MetricSampleRecord>().CountAsync(m => m.AgentId == id));
        Assert.Equal(1, await db.ReceivedBatches.CountAsync(b => b.AgentId == id));
    }
}
