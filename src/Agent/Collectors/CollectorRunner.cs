using Fleet.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Fleet.Agent.Collectors;

/// <summary>
/// Runs one collector on its interval and hands each collection's samples, plus the runner's own metrics, to a sink.
/// A collection still running at the next tick makes that tick be skipped; one running past the timeout is cancelled
/// and abandoned (if it ignores cancellation it keeps later ticks skipped until it returns); a failure is logged once
/// per distinct message and counted. Nothing but cancellation ends <see cref="RunAsync"/>.
/// </summary>
/// <remarks>
/// Self-metrics, labelled <c>collector</c>, in every batch: <c>agent.collector.duration_seconds</c>,
/// <c>agent.collector.errors_total</c>, <c>agent.collector.timeouts_total</c>, <c>agent.collector.skipped_total</c>.
/// A failed or timed-out collection's batch holds only these.
/// </remarks>
public sealed class CollectorRunner
{
    /// <summary>Bound on remembered distinct messages, so messages that embed changing values cannot grow it forever.</summary>
    internal const int MaxLoggedMessages = 64;

    private readonly ICollector _collector;
    private readonly CollectorSettings _settings;
    private readonly Func<IReadOnlyList<MetricSample>, CancellationToken, ValueTask> _sink;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly HashSet<string> _logged = new(StringComparer.Ordinal);

    private long _runs;
    private long _skipped;
    private long _timedOut;
    private long _errors;
    private long _lastDurationTicks;
    private TimeSpan _interval;
    private PeriodicTimer? _timer;

    /// <summary>1 from a tick that starts a collection until that collection's batch has been handed on.</summary>
    private int _collecting;

    /// <summary>A timed-out collection that ignored cancellation; ticks are skipped until it returns.</summary>
    private volatile Task? _abandoned;

    public CollectorRunner(
        ICollector collector,
        CollectorSettings settings,
        Func<IReadOnlyList<MetricSample>, CancellationToken, ValueTask> sink,
        TimeProvider time,
        ILogger logger)
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
    internal bool IsBusy => Volatile.Read(ref _collecting) != 0 || _abandoned is { IsCompleted: false };

    /// <summary>Collects at once, then on every tick of the interval, until cancelled.</summary>
    /// <exception cref="OperationCanceledException">Always, once <paramref name="cancellationToken"/> is cancelled.</exception>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var timer = new PeriodicTimer(_interval, _time);
        _timer = timer;
        Task? current = null;
        try
        {
            do
            {
                if (IsBusy)
                {
                    Interlocked.Increment(ref _skipped);
                    if (FirstTime("skipped")) CollectorRunnerLog.Skipped(_logger, _collector.Name);
                }
                else
                {
                    Volatile.Write(ref _collecting, 1);
                    current = CollectOnceAsync(cancellationToken);
                }
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        finally
        {
            // Bounded: the collection stops waiting on cancellation, even for a collector that ignores it.
            if (current is not null) await current;
        }
    }

    private async Task CollectOnceAsync(CancellationToken cancellationToken)
    {
        try
        {
            await CollectAndSendAsync(cancellationToken);
        }
        finally
        {
            Volatile.Write(ref _collecting, 0);
        }
    }

    private async Task CollectAndSendAsync(CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _runs);
        var writer = new MetricWriter(_time.GetUtcNow().ToUnixTimeMilliseconds());
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
