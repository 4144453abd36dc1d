using Fleet.Agent.Configuration;
using Fleet.Agent.Identity;
using Fleet.Agent.Metrics;
using Fleet.Agent.Outbox;
using Fleet.Agent.Tests.Outbox;
using Fleet.Agent.Transport;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Fleet.Agent.Tests.Transport;

public sealed class OversizedRecordTests
{
    static Batch TaskBatch(string invocationId, int resultBytes) => new()
    {
        CreatedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow),
        Tasks = new TaskUpdates { Updates = { new TaskUpdate { InvocationId = invocationId, Finished = new TaskFinished { ResultJson = new string('r', resultBytes) } } } },
    };

    [Fact]
    public async Task Record_over_the_message_limit_is_rejected_locally_and_the_records_behind_it_are_sent()
    {
        using var state = new TempDirectory();
        var options = new AgentOptions { StateDirectory = state.Path };
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = state.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        var logger = new ListLogger<CoordinatorConnection>();
        using var connection = new CoordinatorConnection(options, AgentIdentity.Load(options), outbox, new CentralConfig(), TimeProvider.System, logger);
        await outbox.AppendOk(TaskBatch("inv-huge", 5 * 1024 * 1024).ToByteArray());
        await outbox.AppendOk(TaskBatch("inv-small", 10).ToByteArray());

        var first = AgentMessage.Parser.ParseFrom((await connection.NextBatchMessageAsync(CancellationToken.None).AsTask().DefaultTimeout()).ToByteArray());
        outbox.Rewind(); // as on a reconnect: the oversized record is gone, not first in line again
        var afterReconnect = AgentMessage.Parser.ParseFrom((await connection.NextBatchMessageAsync(CancellationToken.None).AsTask().DefaultTimeout()).ToByteArray());

        Assert.Equal("inv-small", first.Batch.Tasks.Updates[0].InvocationId);
        Assert.Equal("inv-small", afterReconnect.Batch.Tasks.Updates[0].InvocationId);
        Assert.True(first.CalculateSize() <= options.MaxMessageBytes);
        Assert.Equal(1, connection.OversizedRecords);
        Assert.Equal(1, outbox.DroppedRecords);
        Assert.True(logger.Has(LogLevel.Warning, "exceeds the " + AgentOptions.DefaultMaxMessageBytes + "-byte limit"));
    }

    [Fact]
    public void Metric_batches_are_split_to_stay_under_the_message_limit()
    {
        var samples = Enumerable.Range(0, 60_000).Select(i => new MetricSample
        {
            Name = "process.cpu_seconds",
            Value = i,
            Labels = { ["process"] = "worker-" + i, ["host"] = new string('h', 40) },
        }).ToList();
        var probes = Enumerable.Range(0, 100).Select(i => new ProbeResult { Name = "probe-" + i, Ok = true }).ToList();
        const int limit = 1024 * 1024;

        var batches = MetricsPipeline.Split(samples, probes, limit);

        Assert.True(batches.Count > 1);
        Assert.All(batches, b => Assert.InRange(b.CalculateSize(), 1, limit));
        Assert.Equal(samples, batches.SelectMany(b => b.Samples));
        Assert.Equal(probes, batches.SelectMany(b => b.Probes));
    }
}
