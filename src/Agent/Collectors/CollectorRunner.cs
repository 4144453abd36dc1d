using System.Threading.Channels;
using Fleet.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Fleet.Agent.Collectors;

/// <summary>
/// Runs one collector on its interval and hands each collection's samples, plus the runner's own metrics, to a sink.
/// A collection still running at the next tick makes that tick be skipped; one running past the timeout is cancelled
/// and abandoned (if it ignores cancellation it keeps later ticks skipped until it returns); a failure is logged once
/// per distinct message and counted. Nothing but cancellation ends <see cref="RunAsync"/>.
/// <para>
/// A collector that can watch its source (<see cref="IWatchableCollector"/>, with <see cref="CollectorSettings.Watch"/>)
/// is also collected when the source reports a change: events within <see cref="ChangeDebounce"/> make one collection,
/// collections start at least <see cref="MinChangeSpacing"/> apart, never while another one runs (an event during a
/// collection makes one more afterwards), and each one's samples are followed by the "send now" callback. The ticks
/// go on as the fallback: a missed event is collected at the next tick, a watch error triggers a collection at once,
/// and a watch that could not be set up (or broke) is retried at every tick; each problem is logged once.
/// </para>
/// </summary>
/// <remarks>
/// Self-metrics, labelled <c>collector</c>, in every batch: <c>agent.collector.duration_seconds</c>,
/// <c>agent.collector.errors_total</c>, <c>agent.collector.timeouts_total</c>, <c>agent.collector.skipped_total</c>;
/// for a watching runner also <c>agent.collector.watching</c> (1 while the watch is up, 0 while only the interval
/// runs) and <c>agent.collector.change_collections_total</c>. A failed or timed-out collection's batch holds only these.
/// </remarks>
public sealed class CollectorRunner
{
    /// <summary>Bound on remembered distinct messages, so messages that embed changing values cannot grow it forever.</summary>
    internal const int MaxLoggedMessages = 64;

    /// <summary>Change events this close together make one collection (a writer's rename, several files written).</summary>
    internal static readonly TimeSpan ChangeDebounce = TimeSpan.FromMilliseconds(20);

    /// <summary>A change-triggered collection starts at least this long after the previous collection started.</summary>
    internal static readonly TimeSpan MinChangeSpacing = TimeSpan.FromMilliseconds(50);

    private const int Idle = 0;
    private const int OnTick = 1;
    private const int OnChange = 2;

    private readonly ICollector _collector;
    private readonly CollectorSettings _settings;
    private readonly Func<IReadOnlyList<MetricSample>, CancellationToken, ValueTask> _sink;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Action? _changeCollected;
    private readonly HashSet<string> _logged = new(StringComparer.Ordinal);
    private readonly IWatchableCollector? _watchable;

    /// <summary>Written by a change event, read by the change loop; holds at most one pending change.</summary>
    private readonly Channel<bool> _changed = Channel.CreateBounded<bool>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });

    /// <summary>Guards starting a collection, so that the tick and the change loop never start two at once.</summary>
    private readonly Lock _start = new();

    private long _runs;
    private long _skipped;
    private long _timedOut;
    private long _errors;
    private long _lastDurationTicks;
    private long _changeRuns;
    private long _lastStarted;

    /// <summary>The time stamped on the latest collection; the next one gets a later one (see <see cref="TryStart"/>).</summary>
    private long _lastTimeUnixMs = long.MinValue;
    private TimeSpan _interval;
    private PeriodicTimer? _timer;

    /// <summary>What started the running collection (<see cref="OnTick"/> or <see cref="OnChange"/>), from its start
    /// until its batch has been handed on; <see cref="Idle"/> otherwise.</summary>
    private int _collecting;

    /// <summary>The latest collection started (completed once it has been handed on).</summary>
    private Task _current = Task.CompletedTask;

    /// <summary>Only the tick loop sets and disposes it.</summary>
    private IDisposable? _watch;

    /// <summary>Set by a watch error that ends the watch; the next tick sets up a new one.</summary>
    private volatile bool _watchBroken;

    /// <summary>A timed-out collection that ignored cancellation; ticks are skipped until it returns.</summary>
    private volatile Task? _abandoned;

    public CollectorRunner(
        ICollector collector,
        CollectorSettings settings,
        Func<IReadOnlyList<MetricSample>, CancellationToken, ValueTask> sink,
        TimeProvider time,
        ILogger logger,
        Action? changeCollected = null)
    {
        ArgumentNullException.ThrowIfNull(collector);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(sink);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(settings.Interval, TimeSpan.Zero, nameof(settings));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(settings.Timeout, TimeSpan.Zero, nameof(settings));
        _collector = collector;
        _settings = settings;
        _interval = settings.Interval;
        _sink = sink;
        _time = time;
        _logger = logger;
        _changeCollected = changeCollected;
        _watchable = settings.Watch ? collector as IWatchableCollector : null;
    }

    /// <summary>The interval in effect: the local setting, or the coordinator's override for this collector.</summary>
    public TimeSpan Interval => _interval;

    /// <summary>Changes the interval from the next tick on (central override); null restores the local setting.</summary>
    public void SetInterval(TimeSpan? interval)
    {
        var effective = interval is { } i && i > TimeSpan.Zero ? i : _settings.Interval;
        _interval = effective;
        if (_timer is { } timer) timer.Period = effective;
    }

    public CollectorStats Stats => new(
        Interlocked.Read(ref _runs),
        Interlocked.Read(ref _skipped),
        Interlocked.Read(ref _timedOut),
        Interlocked.Read(ref _errors),
        TimeSpan.FromTicks(Interlocked.Read(ref _lastDurationTicks)));

    /// <summary>True while a tick would be skipped: a collection (or its hand-off to the sink) is running, or an
    /// abandoned one has not returned yet.</summary>
    internal bool IsBusy => Volatile.Read(ref _collecting) != Idle || _abandoned is { IsCompleted: false };

    /// <summary>True while the source's watch is up (changes are collected at once).</summary>
    internal bool IsWatching => Volatile.Read(ref _watch) is not null && !_watchBroken;

    /// <summary>Collections started by a change of the source.</summary>
    internal long ChangeRuns => Interlocked.Read(ref _changeRuns);

    /// <summary>
    /// Asks for a collection soon, as a change of the source does (debounced, spaced, never overlapping another).
    /// Ignored unless this runner watches its source.
    /// </summary>
    public void CollectSoon()
    {
        if (_watchable is not null) _changed.Writer.TryWrite(true); // dropped when one is pending: that one covers both
    }

    /// <summary>Collects at once, then on every tick of the interval (and on changes of a watched source), until
    /// cancelled.</summary>
    /// <exception cref="OperationCanceledException">Always, once <paramref name="cancellationToken"/> is cancelled.</exception>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var timer = new PeriodicTimer(_interval, _time);
        _timer = timer;
        var changes = _watchable is null ? Task.CompletedTask : CollectOnChangesAsync(cancellationToken);
        try
        {
            do
            {
                if (_watchable is not null) EnsureWatching();
                if (!TryStart(OnTick, cancellationToken, out _, out var running) && running != OnChange)
                {
                    // A change-triggered collection that is running serves this tick; anything else makes it a skip.
                    Interlocked.Increment(ref _skipped);
                    if (FirstTime("skipped")) CollectorRunnerLog.Skipped(_logger, _collector.Name);
                }
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        finally
        {
            Interlocked.Exchange(ref _watch, null)?.Dispose();
            try { await changes; }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
            // Bounded: the collection stops waiting on cancellation, even for a collector that ignores it.
            Task current;
            lock (_start) current = _current;
            await current;
        }
    }

    /// <summary>
    /// Starts a collection unless one is running or abandoned; then <paramref name="busy"/> is what to wait for and
    /// <paramref name="running"/> what started the running one.
    /// </summary>
    private bool TryStart(int kind, CancellationToken cancellationToken, out Task busy, out int running)
    {
        lock (_start)
        {
            // This order: a collection that times out marks itself abandoned before it goes idle.
            running = Volatile.Read(ref _collecting);
            if (running != Idle)
            {
                busy = _current;
                return false;
            }
            if (_abandoned is { IsCompleted: false } abandoned)
            {
                busy = abandoned;
                return false;
            }
            Volatile.Write(ref _collecting, kind);
            Interlocked.Exchange(ref _lastStarted, _time.GetTimestamp());
            if (kind == OnChange) Interlocked.Increment(ref _changeRuns);
            // Every collection gets its own millisecond: a tick right after a change-triggered collection can fall in
            // the same one, and the coordinator keys samples by (agent, name, labels, time).
            var timeUnixMs = Math.Max(_time.GetUtcNow().ToUnixTimeMilliseconds(), _lastTimeUnixMs + 1);
            _lastTimeUnixMs = timeUnixMs;
            _current = busy = CollectOnceAsync(kind == OnChange, timeUnixMs, cancellationToken);
            return true;
        }
    }

    /// <summary>The change loop: waits for a change, lets a burst settle, keeps the spacing, waits out a running
    /// collection, then collects.</summary>
    private async Task CollectOnChangesAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            await _changed.Reader.ReadAsync(cancellationToken);
            await Task.Delay(ChangeDebounce, _time, cancellationToken);
            while (true)
            {
                var wait = MinChangeSpacing - _time.GetElapsedTime(Interlocked.Read(ref _lastStarted));
                if (wait > TimeSpan.Zero) await Task.Delay(wait, _time, cancellationToken);

                // Changes reported until now are seen by the collection about to start; a later one is pending again
                // and makes one more collection after it.
                _changed.Reader.TryRead(out _);
                if (TryStart(OnChange, cancellationToken, out var busy, out _)) break;
                // Another collection runs (it may have read the source before the change): wait for it, then go on
                // until this loop starts one of its own.
                await Task.WhenAny(busy).WaitAsync(cancellationToken); // never throws for the collection's own fault
            }
        }
    }

    /// <summary>Sets up the source's watch when there is none (first tick, a failure, a watch that broke). A failure
    /// leaves the interval as the only trigger until the next tick tries again; it is logged once.</summary>
    private void EnsureWatching()
    {
        if (_watch is not null && !_watchBroken) return;
        Interlocked.Exchange(ref _watch, null)?.Dispose();
        _watchBroken = false;
        try
        {
            Volatile.Write(ref _watch, _watchable!.Watch(CollectSoon, OnWatchError));
            if (FirstTime("watching")) CollectorRunnerLog.Watching(_logger, _collector.Name);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or PlatformNotSupportedException)
        {
            if (FirstTime("watch: " + Describe(ex))) CollectorRunnerLog.WatchUnavailable(_logger, ex, _collector.Name, ex.Message);
        }
    }

    /// <summary>A watch error: changes may have been missed, so collect now. An overflowed event queue leaves the
    /// watch running; any other error ends it, and the next tick sets up a new one.</summary>
    private void OnWatchError(Exception ex)
    {
        if (ex is not InternalBufferOverflowException) _watchBroken = true;
        if (FirstTime("watch error: " + Describe(ex))) CollectorRunnerLog.WatchFailed(_logger, ex, _collector.Name, ex.Message);
        CollectSoon();
    }

    private async Task CollectOnceAsync(bool onChange, long timeUnixMs, CancellationToken cancellationToken)
    {
        try
        {
            await CollectAndSendAsync(onChange, timeUnixMs, cancellationToken);
        }
        finally
        {
            Volatile.Write(ref _collecting, Idle);
        }
    }

    private async Task CollectAndSendAsync(bool onChange, long timeUnixMs, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _runs);
        var writer = new MetricWriter(timeUnixMs);
        var started = _time.GetTimestamp();
        using var timeout = new CancellationTokenSource(_settings.Timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);

        // On the thread pool, so that a collector that blocks synchronously can still be timed out and abandoned;
        // an exception it throws before returning a task faults the task like any other.
        var collection = Task.Run(() => _collector.CollectAsync(writer, linked.Token).AsTask(), CancellationToken.None);

        var succeeded = false;
        try
        {
            await collection.WaitAsync(linked.Token);
            succeeded = true;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            ObserveLater(collection);
            return;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            Interlocked.Increment(ref _timedOut);
            if (!collection.IsCompleted)
            {
                _abandoned = collection;
                ObserveLater(collection);
            }
            if (FirstTime("timeout")) CollectorRunnerLog.TimedOut(_logger, _collector.Name, (long)_settings.Timeout.TotalMilliseconds);
        }
        catch (Exception ex)
        {
            Interlocked.Increment(ref _errors);
            if (FirstTime(Describe(ex))) CollectorRunnerLog.Failed(_logger, ex, _collector.Name, ex.Message);
        }

        var duration = _time.GetElapsedTime(started);
        Interlocked.Exchange(ref _lastDurationTicks, duration.Ticks);

        // A failed collection may have written part of its samples, an abandoned one may still be writing: drop them.
        var batch = succeeded ? writer : new MetricWriter(writer.TimeUnixMs);
        AddSelfMetrics(batch, duration);

        try
        {
            await _sink(batch.Samples, cancellationToken);
            if (onChange && succeeded) _changeCollected?.Invoke();
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            Interlocked.Increment(ref _errors);
            if (FirstTime("sink: " + Describe(ex))) CollectorRunnerLog.SinkFailed(_logger, ex, _collector.Name, ex.Message);
        }
    }

    private void AddSelfMetrics(MetricWriter writer, TimeSpan duration)
    {
        var name = _collector.Name;
        writer.Add("agent.collector.duration_seconds", duration.TotalSeconds, "collector", name);
        writer.Add("agent.collector.errors_total", Interlocked.Read(ref _errors), "collector", name);
        writer.Add("agent.collector.timeouts_total", Interlocked.Read(ref _timedOut), "collector", name);
        writer.Add("agent.collector.skipped_total", Interlocked.Read(ref _skipped), "collector", name);
        if (_watchable is null) return;
        writer.Add("agent.collector.watching", IsWatching ? 1 : 0, "collector", name);
        writer.Add("agent.collector.change_collections_total", Interlocked.Read(ref _changeRuns), "collector", name);
    }

    private bool FirstTime(string message)
    {
        lock (_logged)
        {
            return _logged.Count < MaxLoggedMessages && _logged.Add(message);
        }
    }

    private static string Describe(Exception ex) => ex.GetType().FullName + ": " + ex.Message;

    /// <summary>Marks a late failure of an abandoned collection as observed (it was already counted as a timeout).</summary>
    private static void ObserveLater(Task collection) =>
        _ = collection.ContinueWith(
            static t => _ = t.Exception,
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
}
