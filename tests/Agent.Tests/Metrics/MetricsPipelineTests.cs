using Fleet.Agent.Collectors;
using Fleet.Agent.Configuration;
using Fleet.Agent.Metrics;
using Fleet.Agent.Outbox;
using Fleet.Agent.Probes;
using Fleet.Protocol.V1;
using Fleet.Agent.Tests.Outbox;
using Fleet.Testing;
using Microsoft.Extensions.Logging;
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
        var pipeline = new MetricsPipeline(options, new CentralConfig(), outbox, TimeProvider.System, NullLoggerFactory.Instance, NullLogger<MetricsPipeline>.Instance);
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

    [Fact]
    public async Task CentralIntervals_OverrideNamedCollectors_AndRevertWhenTheCoordinatorDropsThem()
    {
        using var state = new TempDirectory();
        var options = new AgentOptions
        {
            StateDirectory = state.Path,
            Collectors = new()
            {
                ["memory"] = new CollectorSettings { Interval = TimeSpan.FromSeconds(10) },
                ["load"] = new CollectorSettings { Interval = TimeSpan.FromSeconds(15) },
            },
        };
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = state.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        var central = new CentralConfig();
        var pipeline = new MetricsPipeline(options, central, outbox, TimeProvider.System, NullLoggerFactory.Instance, NullLogger<MetricsPipeline>.Instance);
        await pipeline.StartAsync(CancellationToken.None);
        await Eventually.UntilAsync(() => pipeline.Intervals.Count == 2, "both collectors running");

        central.Apply(new AgentConfig { CollectorIntervals = { ["memory"] = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(60)) } });
        Assert.Equal(TimeSpan.FromSeconds(60), pipeline.Intervals["memory"]);
        Assert.Equal(TimeSpan.FromSeconds(15), pipeline.Intervals["load"]);

        central.Apply(new AgentConfig());
        Assert.Equal(TimeSpan.FromSeconds(10), pipeline.Intervals["memory"]);
        await pipeline.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task A_textfile_change_reaches_the_outbox_at_once_not_at_the_next_flush()
    {
        using var state = new TempDirectory();
        using var textfile = new TempDirectory();
        var options = new AgentOptions
        {
            StateDirectory = state.Path,
            MetricsFlushInterval = TimeSpan.FromHours(1), // only the change-triggered "flush now" can explain a batch
            Collectors = new() { ["textfile"] = new CollectorSettings { Interval = TimeSpan.FromHours(1), TextfileDirectory = textfile.Path } },
        };
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = state.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        using var loggers = new ListLoggerFactory();
        var pipeline = new MetricsPipeline(options, new CentralConfig(), outbox, TimeProvider.System, loggers, NullLogger<MetricsPipeline>.Instance);
        await pipeline.StartAsync(CancellationToken.None);
        await Eventually.UntilAsync(() => loggers.Logger.Has(LogLevel.Information, "watches its source"), "the textfile watch to be set up");

        File.WriteAllText(textfile.Combine("app.prom.tmp"), "app_ready 1\n");
        File.Move(textfile.Combine("app.prom.tmp"), textfile.Combine("app.prom"));

        var samples = new List<MetricSample>();
        using var read = new CancellationTokenSource(TimeSpan.FromSeconds(5)); // a hair of the hour-long intervals
        while (!samples.Any(s => s.Name == "app_ready" && s.Value == 1))
        {
            var record = await outbox.ReadNextAsync(read.Token);
            samples.AddRange(Batch.Parser.ParseFrom(record.Payload.Span).Metrics.Samples);
        }
        await pipeline.StopAsync(CancellationToken.None);

        Assert.Contains(samples, s => s.Name == "agent.collector.change_collections_total" && s.Value >= 1);
    }

    [Fact]
    public async Task A_prom_file_rewritten_every_40_ms_makes_at_most_one_early_flush_per_200_ms_and_its_last_value_arrives()
    {
        using var state = new TempDirectory();
        using var textfile = new TempDirectory();
        var options = new AgentOptions
        {
            StateDirectory = state.Path,
            MetricsFlushInterval = TimeSpan.FromHours(1),
            Collectors = new() { ["textfile"] = new CollectorSettings { Interval = TimeSpan.FromHours(1), TextfileDirectory = textfile.Path } },
        };
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = state.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        using var loggers = new ListLoggerFactory();
        var pipeline = new MetricsPipeline(options, new CentralConfig(), outbox, TimeProvider.System, loggers, NullLogger<MetricsPipeline>.Instance);
        await pipeline.StartAsync(CancellationToken.None);
        await Eventually.UntilAsync(() => loggers.Logger.Has(LogLevel.Information, "watches its source"), "the textfile watch to be set up");

        // The workload: 25 rewrites paced 40 ms apart (a writer that updates its file constantly), about one second in all.
        var started = System.Diagnostics.Stopwatch.StartNew();
        using (var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(40)))
            for (var value = 1; value <= 25; value++)
            {
                File.WriteAllText(textfile.Combine("app.prom.tmp"), $"app_ready {value}\n");
                File.Move(textfile.Combine("app.prom.tmp"), textfile.Combine("app.prom"), overwrite: true);
                await pace.WaitForNextTickAsync();
            }
        var records = 0;
        var last = 0.0;
        using var read = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (last != 25)
        {
            var record = await outbox.ReadNextAsync(read.Token);
            records++;
            foreach (var sample in Batch.Parser.ParseFrom(record.Payload.Span).Metrics.Samples.Where(x => x.Name == "app_ready")) last = sample.Value;
        }
        var elapsed = started.Elapsed;
        await pipeline.StopAsync(CancellationToken.None);

        Assert.Equal(25, last);
        var allowed = (int)(elapsed / MetricsPipeline.MinNudgeGap) + 2;
        Assert.True(records <= allowed, $"{records} outbox records in {elapsed.TotalMilliseconds:0} ms; at most {allowed} (one early flush per {MetricsPipeline.MinNudgeGap.TotalMilliseconds} ms)");
    }

    [Fact]
    public async Task Flushes_that_fall_in_one_millisecond_stamp_their_outbox_samples_with_distinct_times()
    {
        using var state = new TempDirectory();
        using var textfile = new TempDirectory();
        var options = new AgentOptions
        {
            StateDirectory = state.Path,
            MetricsFlushInterval = TimeSpan.FromHours(1),
            Collectors = new() { ["textfile"] = new CollectorSettings { Interval = TimeSpan.FromHours(1), TextfileDirectory = textfile.Path } },
        };
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = state.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        using var loggers = new ListLoggerFactory();
        var clock = new Collectors.CollectOnChangeTests.FrozenWallClock(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000));
        var pipeline = new MetricsPipeline(options, new CentralConfig(), outbox, clock, loggers, NullLogger<MetricsPipeline>.Instance);
        await pipeline.StartAsync(CancellationToken.None);
        await Eventually.UntilAsync(() => loggers.Logger.Has(LogLevel.Information, "watches its source"), "the textfile watch to be set up");

        var samples = new List<MetricSample>();
        using var read = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        for (var value = 1; value <= 2; value++) // two change-triggered flushes, one after the other
        {
            File.WriteAllText(textfile.Combine("app.prom.tmp"), $"app_ready {value}\n");
            File.Move(textfile.Combine("app.prom.tmp"), textfile.Combine("app.prom"), overwrite: true);
            while (!samples.Any(s => s.Name == "app_ready" && s.Value == value))
            {
                var record = await outbox.ReadNextAsync(read.Token);
                samples.AddRange(Batch.Parser.ParseFrom(record.Payload.Span).Metrics.Samples);
            }
        }
        await pipeline.StopAsync(CancellationToken.None);

        var flushTimes = samples.Where(s => s.Name == "agent.outbox.pending_records").Select(s => s.TimeUnixMs).ToList();
        Assert.True(flushTimes.Count >= 2);
        Assert.Equal(flushTimes.Count, flushTimes.Distinct().Count());
        var appTimes = samples.Where(s => s.Name == "app_ready").Select(s => s.TimeUnixMs).ToList();
        Assert.Equal(appTimes.Count, appTimes.Distinct().Count());
    }

    /// <summary>Hands one capturing logger to every category.</summary>
    private sealed class ListLoggerFactory : ILoggerFactory
    {
        public ListLogger<MetricsPipeline> Logger { get; } = new();
        public ILogger CreateLogger(string categoryName) => Logger;
        public void AddProvider(ILoggerProvider provider) { }
        public void Dispose() { }
    }
}
