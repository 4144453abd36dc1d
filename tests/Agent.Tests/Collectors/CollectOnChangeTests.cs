using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Fleet.Agent.Collectors;
using Fleet.Agent.Tests.Outbox;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Agent.Tests.Collectors;

/// <summary>
/// The textfile collector's watch: a change of a <c>*.prom</c> file is collected (and handed on with the "send now"
/// callback) at once, long before the interval; the interval stays the fallback for anything the watch misses.
/// </summary>
public sealed class CollectOnChangeTests : IDisposable
{
    /// <summary>So long that only the watch can explain a collection within a test's deadline.</summary>
    private static readonly TimeSpan LongInterval = TimeSpan.FromSeconds(60);

    /// <summary>A change must be collected within this; a tiny fraction of <see cref="LongInterval"/>, generous for a
    /// loaded machine (the path itself takes about 20 ms of debounce plus one read of the directory).</summary>
    private static readonly TimeSpan ChangeDeadline = TimeSpan.FromSeconds(5);

    private readonly TempDirectory _directory = new();
    private readonly ConcurrentQueue<IReadOnlyList<MetricSample>> _batches = new();
    private readonly ListLogger<CollectorRunner> _logger = new();
    private readonly CancellationTokenSource _stop = new();
    private int _sendNow;

    public void Dispose()
    {
        _stop.Cancel();
        _stop.Dispose();
        _directory.Dispose();
    }

    [Fact]
    public async Task A_prom_file_renamed_into_the_directory_is_collected_and_sent_at_once_not_at_the_next_tick()
    {
        RenameIntoPlace("bench.prom", "bench_alert 0");
        var runner = Runner(new TextfileCollector(TextfileSettings()), TimeProvider.System, LongInterval);
        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => Latest("bench_alert") == 0, "the first collection");
        Assert.True(runner.IsWatching);

        RenameIntoPlace("bench.prom", "bench_alert 1");
        await Eventually.UntilAsync(() => Latest("bench_alert") == 1, "the renamed file to be collected", ChangeDeadline);

        Assert.True(runner.ChangeRuns >= 1, "only the watch can explain a collection long before the 60 s tick");
        Assert.True(Volatile.Read(ref _sendNow) >= 1, "a change-triggered collection asks for its samples to be sent now");
        var last = _batches.Last();
        Assert.Equal(1, last.Find("agent.collector.watching", ("collector", "textfile"))?.Value);
        Assert.Equal(runner.ChangeRuns, last.Find("agent.collector.change_collections_total", ("collector", "textfile"))?.Value);
        Assert.Contains(_logger.Entries, e => e.Level == LogLevel.Information && e.Message.Contains("watches its source", StringComparison.Ordinal));
        await StopAsync(run);
    }

    [Fact]
    public async Task A_burst_of_changes_is_coalesced_into_few_collections_and_the_last_value_is_collected()
    {
        RenameIntoPlace("a.prom", "burst -1");
        var runner = Runner(new TextfileCollector(TextfileSettings()), TimeProvider.System, LongInterval);
        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => Latest("burst") == -1, "the first collection");

        const int Renames = 200;
        var burst = Stopwatch.StartNew();
        for (var i = 0; i < Renames; i++)
        {
            RenameIntoPlace("a.prom", $"burst {i}");
            File.WriteAllText(Path.Combine(_directory.Path, "b.prom"), $"other {i}\n"); // written in place: Changed events
        }
        await Eventually.UntilAsync(() => Latest("burst") == Renames - 1 && Latest("other") == Renames - 1, "the burst's last values", ChangeDeadline);
        var changeRuns = runner.ChangeRuns;
        var elapsed = burst.Elapsed;

        // Change-triggered collections start at least 50 ms apart: at most one per 50 ms of the burst, plus one.
        var bound = 1 + (long)(elapsed / CollectorRunner.MinChangeSpacing);
        Assert.InRange(changeRuns, 1, bound);
        Assert.True(changeRuns < Renames, $"{changeRuns} collections for {Renames * 2} files renamed or written");
        Assert.Equal(0, runner.Stats.Skipped);
        await StopAsync(run);
    }

    [Fact]
    public async Task A_change_during_a_collection_makes_one_more_collection_after_it()
    {
        using var release = new SemaphoreSlim(0);
        var source = new WatchedSource { Value = 1 };
        source.BeforeRead = () =>
        {
            if (source.Reads == 2) release.Wait(); // the first change-triggered collection blocks, as a slow read would
        };
        var runner = Runner(source, TimeProvider.System, LongInterval);
        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => Latest("source.value") == 1, "the first collection");

        source.Value = 2;
        source.Fire();
        await Eventually.UntilAsync(() => source.Reads == 2, "the change-triggered collection to start");
        source.Value = 3; // after that collection read the source: only another collection can see it
        source.Fire();
        release.Release();

        await Eventually.UntilAsync(() => Latest("source.value") == 3, "the change made during a collection to be collected", ChangeDeadline);
        Assert.Equal(2, runner.ChangeRuns);
        Assert.Equal(0, source.Concurrent); // never two collections at once
        await StopAsync(run);
    }

    [Fact]
    public async Task A_change_the_watch_misses_is_collected_at_the_next_tick()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
        var source = new WatchedSource { Value = 1 };
        var runner = Runner(source, time, LongInterval);
        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => Latest("source.value") == 1, "the first collection");
        Assert.True(runner.IsWatching);

        source.Value = 2; // no event: the watch missed it (an overflowed inotify queue drops events)
        await Eventually.UntilAsync(() => !runner.IsBusy, "the first collection to be handed on");
        time.Advance(LongInterval);

        await Eventually.UntilAsync(() => Latest("source.value") == 2, "the next tick to collect the change");
        Assert.Equal(0, runner.ChangeRuns);
        Assert.Equal(2, runner.Stats.Runs);
        Assert.True(runner.IsWatching);
        await StopAsync(run);
    }

    [Fact]
    public async Task A_watch_error_is_logged_once_and_triggers_a_collection_and_an_overflow_keeps_the_watch()
    {
        var source = new WatchedSource { Value = 1 };
        var runner = Runner(source, TimeProvider.System, LongInterval);
        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => Latest("source.value") == 1, "the first collection");

        source.Value = 2;
        source.Fail(new InternalBufferOverflowException("Too many changes at once in directory:/x."));
        await Eventually.UntilAsync(() => Latest("source.value") == 2, "the overflow to trigger a collection", ChangeDeadline);
        source.Value = 3;
        source.Fail(new InternalBufferOverflowException("Too many changes at once in directory:/x."));
        await Eventually.UntilAsync(() => Latest("source.value") == 3, "the second overflow to trigger a collection", ChangeDeadline);

        Assert.True(runner.IsWatching);
        Assert.Equal(1, source.Watches);
        Assert.Single(_logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("Too many changes", StringComparison.Ordinal));

        source.Value = 4;
        source.Fire(); // the watch still reports changes
        await Eventually.UntilAsync(() => Latest("source.value") == 4, "a change after the overflows", ChangeDeadline);
        await StopAsync(run);
    }

    [Fact]
    public async Task A_watch_that_cannot_be_set_up_falls_back_to_the_interval_logs_once_and_is_retried_at_each_tick()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
        var missing = Path.Combine(_directory.Path, "not-yet");
        var runner = Runner(new TextfileCollector(new CollectorSettings { TextfileDirectory = missing, Interval = LongInterval }), time, LongInterval);
        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => _batches.Count == 1, "the first (failed) collection");
        Assert.False(runner.IsWatching);
        Assert.Equal(0, _batches.Last().Find("agent.collector.watching", ("collector", "textfile"))?.Value);

        await NextTickAsync(runner, time);
        await Eventually.UntilAsync(() => _batches.Count == 2, "the second tick's collection");
        Assert.False(runner.IsWatching);
        Assert.Single(_logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("cannot watch", StringComparison.Ordinal));

        Directory.CreateDirectory(missing);
        await NextTickAsync(runner, time);
        await Eventually.UntilAsync(() => runner.IsWatching, "the watch to be set up at the next tick");
        await Eventually.UntilAsync(() => _batches.Count == 3 && !runner.IsBusy, "that tick's collection to be handed on");

        File.WriteAllText(Path.Combine(missing, "late.prom.tmp"), "late 7\n");
        File.Move(Path.Combine(missing, "late.prom.tmp"), Path.Combine(missing, "late.prom"), overwrite: true);
        // The debounce runs on the fake clock: move it in small steps, far from the next tick.
        await Eventually.UntilAsync(() =>
        {
            time.Advance(TimeSpan.FromMilliseconds(10));
            return Latest("late") == 7;
        }, "the file renamed into the new directory to be collected", ChangeDeadline);
        Assert.Equal(1, runner.ChangeRuns);
        await StopAsync(run);
    }

    [Fact]
    public async Task With_watch_off_the_source_is_not_watched_and_only_the_interval_collects()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
        var source = new WatchedSource { Value = 1 };
        var runner = new CollectorRunner(source, new CollectorSettings { Interval = LongInterval, Watch = false }, Sink, time, _logger, () => Interlocked.Increment(ref _sendNow));
        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => Latest("source.value") == 1, "the first collection");

        source.Value = 2;
        runner.CollectSoon(); // as an event would: ignored
        await NextTickAsync(runner, time);
        await Eventually.UntilAsync(() => Latest("source.value") == 2, "the tick to collect");

        Assert.Equal(0, source.Watches);
        Assert.False(runner.IsWatching);
        Assert.Equal(0, runner.ChangeRuns);
        Assert.Equal(2, runner.Stats.Runs);
        Assert.Equal(0, Volatile.Read(ref _sendNow));
        Assert.DoesNotContain(_batches.Last(), s => s.Name == "agent.collector.watching");
        await StopAsync(run);
    }

    [Fact]
    public async Task Collections_that_fall_in_one_millisecond_are_stamped_with_distinct_times()
    {
        // The wall clock stands still (timers still run): a change-triggered collection and the one before it would
        // otherwise carry the same time, which the coordinator's sample key (agent, name, labels, time) refuses.
        var clock = new FrozenWallClock(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000));
        var source = new WatchedSource { Value = 1 };
        var runner = Runner(source, clock, LongInterval);
        var run = runner.RunAsync(_stop.Token);
        await Eventually.UntilAsync(() => _batches.Count == 1, "the first collection");

        source.Fire();
        await Eventually.UntilAsync(() => _batches.Count == 2, "the change-triggered collection", ChangeDeadline);
        source.Fire();
        await Eventually.UntilAsync(() => _batches.Count == 3, "another change-triggered collection", ChangeDeadline);

        var times = _batches.Select(b => b.Select(s => s.TimeUnixMs).Distinct().Single()).ToList();
        Assert.Equal([1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002], times);
        await StopAsync(run);
    }

    private CollectorSettings TextfileSettings() => new() { TextfileDirectory = _directory.Path, Interval = LongInterval };

    private CollectorRunner Runner(ICollector collector, TimeProvider time, TimeSpan interval) =>
        new(collector, new CollectorSettings { Interval = interval, Timeout = TimeSpan.FromSeconds(10) }, Sink, time, _logger,
            () => Interlocked.Increment(ref _sendNow));

    private ValueTask Sink(IReadOnlyList<MetricSample> samples, CancellationToken cancellationToken)
    {
        _batches.Enqueue(samples);
        return ValueTask.CompletedTask;
    }

    /// <summary>The value of <paramref name="name"/> in the latest batch that has it, or null.</summary>
    private double? Latest(string name) =>
        _batches.Reverse().Select(b => b.FirstOrDefault(s => s.Name == name)).FirstOrDefault(s => s is not null)?.Value;

    /// <summary>Writes a temporary file and renames it into place, as textfile writers should.</summary>
    private void RenameIntoPlace(string name, string content)
    {
        var path = Path.Combine(_directory.Path, name);
        File.WriteAllText(path + ".tmp", content + "\n");
        File.Move(path + ".tmp", path, overwrite: true);
    }

    private static async Task NextTickAsync(CollectorRunner runner, FakeTimeProvider time)
    {
        await Eventually.UntilAsync(() => !runner.IsBusy, "the runner to finish its collection");
        var before = runner.Stats.Runs + runner.Stats.Skipped;
        time.Advance(LongInterval);
        await Eventually.UntilAsync(() => runner.Stats.Runs + runner.Stats.Skipped > before, "the runner to take the tick");
    }

    private async Task StopAsync(Task run)
    {
        await _stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.DefaultTimeout());
    }

    /// <summary>A wall clock that stands still; timers and timestamps are the system's.</summary>
    internal sealed class FrozenWallClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    /// <summary>A source the test changes by hand, with a watch the test fires (or does not: a missed event).</summary>
    private sealed class WatchedSource : IWatchableCollector
    {
        private Action? _changed;
        private Action<Exception>? _failed;
        private int _reads;
        private int _watches;
        private int _inside;
        private int _concurrent;

        public double Value { get; set; }
        public Action? BeforeRead { get; set; }
        public int Reads => Volatile.Read(ref _reads);
        public int Watches => Volatile.Read(ref _watches);
        public int Concurrent => Volatile.Read(ref _concurrent);

        public string Name => "source";

        public ValueTask CollectAsync(MetricWriter writer, CancellationToken cancellationToken)
        {
            if (Interlocked.Increment(ref _inside) > 1) Interlocked.Increment(ref _concurrent);
            try
            {
                var value = Value; // what this collection sees, even if it is held up below
                Interlocked.Increment(ref _reads);
                BeforeRead?.Invoke();
                writer.Add("source.value", value);
                return ValueTask.CompletedTask;
            }
            finally
            {
                Interlocked.Decrement(ref _inside);
            }
        }

        public IDisposable Watch(Action changed, Action<Exception> failed)
        {
            Interlocked.Increment(ref _watches);
            (_changed, _failed) = (changed, failed);
            return new Unwatch(this);
        }

        public void Fire() => _changed?.Invoke();

        public void Fail(Exception error) => _failed?.Invoke(error);

        private sealed class Unwatch(WatchedSource source) : IDisposable
        {
            public void Dispose() => (source._changed, source._failed) = (null, null);
        }
    }
}
