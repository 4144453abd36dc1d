using System.Collections.Concurrent;
using Fleet.Agent.Collectors;
using Fleet.Agent.Tests.Outbox;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Agent.Tests.Collectors;

public sealed class CollectorRunnerTests : IDisposable
{
    private static readonly DateTimeOffset Start = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    private readonly FakeTimeProvider _time = new(Start);
    private readonly ConcurrentQueue<IReadOnlyList<MetricSample>> _batches = new();
    private readonly ListLogger<CollectorRunner> _logger = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly ManualResetEventSlim _gate = new();

    public void Dispose()
    {
        _stop.Cancel();
        _gate.Set();
        _stop.Dispose();
        _gate.Dispose();
    }

    [Fact]
    public async Task Each_collection_goes_to_the_sink_with_the_runners_self_metrics_stamped_with_the_collection_time()
    {
        var collector = new TestCollector((writer, _) =>
        {
            writer.Add("test.value", 42);
            _time.Advance(TimeSpan.FromMilliseconds(1500)); // the collection takes 1.5 s
            return Task.CompletedTask;
        });
        var runner = Runner(collector, timeout: TimeSpan.FromSeconds(5));

        var run = runner.RunAsync(_stop.Token);
        var first = await NextBatchAsync();

        Assert.Equal(42, Value(first, "test.value"));
        Assert.Equal(1.5, Value(first, "agent.collector.duration_seconds", "test"));
        Assert.Equal(0, Value(first, "agent.collector.errors_total", "test"));
        Assert.Equal(0, Value(first, "agent.collector.timeouts_total", "test"));
        Assert.Equal(0, Value(first, "agent.collector.skipped_total", "test"));
        Assert.Equal(5, first.Count);
        Assert.All(first, s => Assert.Equal(Start.ToUnixTimeMilliseconds(), s.TimeUnixMs));
        Assert.Equal(new CollectorStats(1, 0, 0, 0, TimeSpan.FromMilliseconds(1500)), runner.Stats);

        await AdvanceToNextTickAsync(runner);
        var second = await NextBatchAsync();

        Assert.All(second, s => Assert.Equal(Start.ToUnixTimeMilliseconds() + 10_000, s.TimeUnixMs));
        await StopAsync(run);
    }

    [Fact]
    public async Task A_tick_that_comes_while_the_collection_still_runs_is_skipped_and_counted()
    {
        // Blocks synchronously, as a read of a hung file would: the ticks must not be held up by it.
        var collector = new TestCollector((writer, _) =>
        {
            _gate.Wait();
            writer.Add("test.value", 1);
            return Task.CompletedTask;
        });
        var runner = Runner(collector, timeout: TimeSpan.FromMinutes(1));

        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => collector.Calls == 1, "the first collection to start");
        _time.Advance(Interval);
        await Eventually.UntilAsync(() => runner.Stats.Skipped == 1, "the overlapping tick to be skipped");

        Assert.Equal(1, collector.Calls);
        Assert.Equal(1, runner.Stats.Runs);
        Assert.Equal(0, runner.Stats.TimedOut);
        Assert.False(run.IsCompleted);

        _gate.Set();
        var first = await NextBatchAsync();
        Assert.Equal(1, Value(first, "test.value"));
        Assert.Equal(1, Value(first, "agent.collector.skipped_total", "test"));

        await AdvanceToNextTickAsync(runner);
        await Eventually.UntilAsync(() => collector.Calls == 2, "the next tick to collect again");
        Assert.Equal(1, runner.Stats.Skipped);
        Assert.Single(_logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("skipped", StringComparison.Ordinal));
        await StopAsync(run);
    }

    [Fact]
    public async Task A_collection_past_its_timeout_is_cancelled_and_counted_and_the_next_tick_collects_again()
    {
        var collector = new TestCollector(async (writer, cancellationToken) =>
        {
            writer.Add("test.partial", 1);
            await Task.Delay(Timeout.InfiniteTimeSpan, _time, cancellationToken);
        });
        var runner = Runner(collector, timeout: TimeSpan.FromSeconds(3));

        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => collector.Calls == 1, "the first collection to start");
        _time.Advance(TimeSpan.FromSeconds(3));
        var first = await NextBatchAsync();

        Assert.Equal(1, runner.Stats.TimedOut);
        Assert.Equal(0, runner.Stats.Errors);
        Assert.Equal(TimeSpan.FromSeconds(3), runner.Stats.LastDuration);
        Assert.Equal(1, Value(first, "agent.collector.timeouts_total", "test"));
        Assert.Equal(3, Value(first, "agent.collector.duration_seconds", "test"));
        Assert.DoesNotContain(first, s => s.Name == "test.partial"); // what a timed-out collection wrote is dropped

        await AdvanceToNextTickAsync(runner);
        await Eventually.UntilAsync(() => collector.Calls == 2, "the next tick to collect again");
        Assert.Equal(0, runner.Stats.Skipped);
        Assert.Single(_logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("timed out", StringComparison.Ordinal));
        await StopAsync(run);
    }

    [Fact]
    public async Task A_timed_out_collection_that_ignores_cancellation_keeps_ticks_skipped_until_it_returns()
    {
        // The first collection blocks its thread and never looks at the token.
        TestCollector? collector = null;
        collector = new TestCollector((_, _) =>
        {
            if (collector!.Calls == 1) _gate.Wait();
            return Task.CompletedTask;
        });
        var runner = Runner(collector, timeout: TimeSpan.FromSeconds(3));

        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => collector.Calls == 1, "the first collection to start");
        _time.Advance(TimeSpan.FromSeconds(3));
        await NextBatchAsync();
        _time.Advance(Interval - TimeSpan.FromSeconds(3));
        await Eventually.UntilAsync(() => runner.Stats.Skipped == 1, "the tick during the abandoned collection to be skipped");

        Assert.Equal(1, runner.Stats.TimedOut);
        Assert.Equal(1, collector.Calls);

        _gate.Set(); // it finally returns
        await AdvanceToNextTickAsync(runner);
        await Eventually.UntilAsync(() => collector.Calls == 2, "collections to resume");
        var resumed = await NextBatchAsync();
        Assert.Equal(1, Value(resumed, "agent.collector.skipped_total", "test"));
        Assert.Equal(1, Value(resumed, "agent.collector.timeouts_total", "test"));
        await StopAsync(run);
    }

    [Fact]
    public async Task Failures_are_counted_logged_once_per_distinct_message_and_the_runner_keeps_going()
    {
        TestCollector? collector = null;
        collector = new TestCollector((_, _) => throw new InvalidOperationException(collector!.Calls <= 3 ? "device busy" : "permission denied"));
        var runner = Runner(collector, timeout: TimeSpan.FromSeconds(5));

        var run = runner.RunAsync(_stop.Token);
        for (var i = 1; i < 6; i++) await AdvanceToNextTickAsync(runner);
        await Eventually.UntilAsync(() => _batches.Count == 6, "six batches");

        Assert.False(run.IsCompleted);
        Assert.Equal(new CollectorStats(6, 0, 0, 6, TimeSpan.Zero), runner.Stats);
        var warnings = _logger.Entries.Where(e => e.Level == LogLevel.Warning).Select(e => e.Message).ToList();
        Assert.Equal(2, warnings.Count);
        Assert.Single(warnings, m => m.Contains("device busy", StringComparison.Ordinal));
        Assert.Single(warnings, m => m.Contains("permission denied", StringComparison.Ordinal));
        var last = _batches.Last();
        Assert.Equal(6, Value(last, "agent.collector.errors_total", "test"));
        Assert.Equal(4, last.Count); // self-metrics only
        await StopAsync(run);
    }

    [Fact]
    public async Task A_failing_sink_is_counted_as_an_error_and_the_next_collection_is_sent()
    {
        var collector = new TestCollector((writer, _) =>
        {
            writer.Add("test.value", 1);
            return Task.CompletedTask;
        });
        var sinkCalls = 0;
        var runner = new CollectorRunner(collector, new CollectorSettings { Interval = Interval }, (samples, _) =>
        {
            if (Interlocked.Increment(ref sinkCalls) == 1) throw new IOException("outbox full");
            _batches.Enqueue(samples);
            return ValueTask.CompletedTask;
        }, _time, _logger);

        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => runner.Stats.Errors == 1, "the sink failure to be counted");
        await AdvanceToNextTickAsync(runner);
        var second = await NextBatchAsync();

        Assert.Equal(1, Value(second, "test.value"));
        Assert.Equal(1, Value(second, "agent.collector.errors_total", "test"));
        Assert.Single(_logger.Entries, e => e.Message.Contains("outbox full", StringComparison.Ordinal));
        await StopAsync(run);
    }

    [Fact]
    public async Task Runners_wrap_registered_collectors_end_to_end()
    {
        using var proc = new FakeProc();
        proc.Write("loadavg", "0.50 0.40 0.30 2/100 1234\n");
        var collector = CollectorRegistry.Default.Create("load", proc.Settings);
        var runner = Runner(collector, timeout: TimeSpan.FromSeconds(5));

        var run = runner.RunAsync(_stop.Token);
        var batch = await NextBatchAsync();

        Assert.Equal(0.5, Value(batch, "load.1m"));
        Assert.Equal(0, Value(batch, "agent.collector.errors_total", "load"));
        await StopAsync(run);
    }

    [Fact]
    public async Task Cancellation_ends_the_runner_even_while_a_collection_ignores_it()
    {
        var collector = new TestCollector((_, _) =>
        {
            _gate.Wait();
            return Task.CompletedTask;
        });
        var runner = Runner(collector, timeout: TimeSpan.FromMinutes(1));

        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => collector.Calls == 1, "the collection to start");

        await StopAsync(run);
        Assert.Empty(_batches);
    }

    private CollectorRunner Runner(ICollector collector, TimeSpan timeout) =>
        new(collector, new CollectorSettings { Interval = Interval, Timeout = timeout }, (samples, _) =>
        {
            _batches.Enqueue(samples);
            return ValueTask.CompletedTask;
        }, _time, _logger);

    private async Task<IReadOnlyList<MetricSample>> NextBatchAsync()
    {
        IReadOnlyList<MetricSample>? batch = null;
        await Eventually.UntilAsync(() => _batches.TryDequeue(out batch), "a batch at the sink");
        return batch!;
    }

    /// <summary>Waits until the runner would collect at a tick, then moves the clock to the next tick.</summary>
    private async Task AdvanceToNextTickAsync(CollectorRunner runner)
    {
        await Eventually.UntilAsync(() => !runner.IsBusy, "the runner to finish its collection");
        var before = runner.Stats.Runs + runner.Stats.Skipped;
        var sinceTick = (_time.GetUtcNow() - Start).Ticks % Interval.Ticks;
        _time.Advance(Interval - TimeSpan.FromTicks(sinceTick));
        // Wait until the runner has taken this tick (a run or a skip): a second advance before that would merge two
        // ticks of the periodic timer into one.
        await Eventually.UntilAsync(() => runner.Stats.Runs + runner.Stats.Skipped > before, "the runner to take the tick");
    }

    private async Task StopAsync(Task run)
    {
        await _stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.DefaultTimeout());
    }

    private static double Value(IReadOnlyList<MetricSample> batch, string name, string? collector = null) =>
        batch.Find(name, collector is null ? [] : [("collector", collector)])?.Value
        ?? throw new Xunit.Sdk.XunitException($"No {name} in: {string.Join(", ", batch.Select(Samples.Describe))}");

    private sealed class TestCollector(Func<MetricWriter, CancellationToken, Task> collect) : ICollector
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public string Name => "test";

        public ValueTask CollectAsync(MetricWriter writer, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            return new ValueTask(collect(writer, cancellationToken));
        }
    }
}
