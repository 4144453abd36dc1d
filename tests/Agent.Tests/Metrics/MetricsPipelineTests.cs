using Fleet.Agent.Collectors;
using Fleet.Agent.Configuration;
using Fleet.Agent.Metrics;
using Fleet.Agent.Outbox;
using Fleet.Agent.Probes;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace Fleet.Agent.Tests.Metrics;

public sealed class MetricsPipelineTests
{
    [Fact]
    public async Task CollectedSamplesAndProbeResults_ReachTheOutbox_AsMetricBatches()
    {
        using var state = new TempDirectory();
        var closedPort = FreePort.Next();
        var options = new AgentOptions
        {
            StateDirectory = state.Path,
            MetricsFlushInterval = TimeSpan.FromMilliseconds(200),
            Collectors = new()
            {
                ["memory"] = new CollectorSettings { Interval = TimeSpan.FromMilliseconds(100), Timeout = TimeSpan.FromMilliseconds(100) },
                ["load"] = new CollectorSettings { Interval = TimeSpan.FromMilliseconds(100), Timeout = TimeSpan.FromMilliseconds(100) },
            },
            Probes = [new ProbeSettings { Name = "nothing-here", Kind = ProbeKinds.Tcp, Address = $"127.0.0.1:{closedPort}", Interval = TimeSpan.FromMilliseconds(100) }],
        };
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = state.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        var pipeline = new MetricsPipeline(options, outbox, TimeProvider.System, NullLoggerFactory.Instance, NullLogger<MetricsPipeline>.Instance);
        await pipeline.StartAsync(CancellationToken.None);

        var samples = new List<MetricSample>();
        var probes = new List<ProbeResult>();
        using var read = new CancellationTokenSource(Eventually.Deadline);
        while (!(samples.Any(s => s.Name == "memory.total_bytes") && samples.Any(s => s.Name == "load.1m") && probes.Count > 0))
        {
            var record = await outbox.ReadNextAsync(read.Token);
            var batch = Batch.Parser.ParseFrom(record.Payload.Span);
            Assert.Equal(Batch.PayloadOneofCase.Metrics, batch.PayloadCase);
            samples.AddRange(batch.Metrics.Samples);
            probes.AddRange(batch.Metrics.Probes);
        }
        await pipeline.StopAsync(CancellationToken.None);

        var memTotalKb = File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        Assert.Equal(double.Parse(memTotalKb, System.Globalization.CultureInfo.InvariantCulture) * 1024, samples.First(s => s.Name == "memory.total_bytes").Value);
        var probe = probes[0];
        Assert.Equal("nothing-here", probe.Name);
        Assert.False(probe.Ok);
        Assert.False(string.IsNullOrEmpty(probe.Reason));
        Assert.True(pipeline.BatchesWritten > 0);
    }
}
