using Fleet.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Fleet.Agent.Probes;

/// <summary>
/// Runs one probe on its interval (ticks at start, start + interval, ...) and hands every result to the sink. Runs
/// never overlap: a run still going at a tick makes that tick skipped (counted and logged), and the next run waits for
/// the next tick. A probe that throws anyway becomes an ok=false result. Logs when a probe starts failing and when it
/// recovers, not on every failed run. Time comes from the injected <see cref="TimeProvider"/>.
/// </summary>
public sealed class ProbeRunner
{
    readonly IProbe probe;
    readonly TimeSpan interval;
    readonly Func<ProbeResult, CancellationToken, ValueTask> sink;
    readonly TimeProvider timeProvider;
    readonly ILogger logger;
    long runs;
    long skipped;
    long failuresInARow;

    public ProbeRunner(IProbe probe, TimeSpan interval, Func<ProbeResult, CancellationToken, ValueTask> sink, TimeProvider timeProvider, ILogger<ProbeRunner> logger)
    {
        ArgumentNullException.ThrowIfNull(probe);
        ArgumentNullException.ThrowIfNull(sink);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero);
        this.probe = probe;
        this.interval = interval;
        this.sink = sink;
        this.timeProvider = timeProvider;
        this.logger = logger;
    }

    public IProbe Probe => probe;

    /// <summary>Runs completed so far.</summary>
    public long Runs => Interlocked.Read(ref runs);

    /// <summary>Ticks skipped because the previous run was still going.</summary>
    public long Skipped => Interlocked.Read(ref skipped);

    /// <summary>Runs the probe now and then on every tick until <paramref name="cancellationToken"/> is cancelled; returns then.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var origin = timeProvider.GetTimestamp();
        long tick = 0;   // index of the tick the current run belongs to
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await RunOnceAsync(cancellationToken);

                var elapsed = timeProvider.GetElapsedTime(origin);
                var next = tick + 1;
                if (elapsed >= interval * next)
                {
                    // The run outlasted one or more ticks: skip them rather than run back to back.
                    var latest = (long)(elapsed.Ticks / interval.Ticks);
                    var missed = latest - tick;
                    Interlocked.Add(ref skipped, missed);
                    ProbeRunnerLog.Skipped(logger, probe.Name, (long)(elapsed - interval * tick).TotalMilliseconds, interval, missed);
                    next = latest + 1;
                }
                tick = next;
                var wait = interval * tick - timeProvider.GetElapsedTime(origin);
                if (wait > TimeSpan.Zero) await Task.Delay(wait, timeProvider, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    async Task RunOnceAsync(CancellationToken cancellationToken)
    {
        ProbeResult result;
        try
        {
            result = await probe.RunAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            ProbeRunnerLog.ProbeThrew(logger, ex, probe.Name, probe.Kind);
            result = new ProbeResult
            {
                Name = probe.Name,
                Kind = probe.Kind,
                Target = probe.Target,
                Ok = false,
                Reason = $"probe error: {ex.Message}",
                TimeUnixMs = timeProvider.GetUtcNow().ToUnixTimeMilliseconds(),
            };
        }
        Interlocked.Increment(ref runs);
        Track(result);

        try
        {
            await sink(result, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The next run produces a fresh result; one lost result must not stop the probe.
            ProbeRunnerLog.SinkFailed(logger, ex, probe.Name);
        }
    }

    void Track(ProbeResult result)
    {
        if (result.Ok)
        {
            if (failuresInARow > 0) ProbeRunnerLog.Recovered(logger, probe.Name, probe.Kind, probe.Target, failuresInARow, result.LatencyMs);
            failuresInARow = 0;
            return;
        }
        if (failuresInARow++ == 0) ProbeRunnerLog.Failing(logger, probe.Name, probe.Kind, probe.Target, result.Reason);
        else ProbeRunnerLog.StillFailing(logger, probe.Name, failuresInARow, result.Reason);
    }
}

/// <summary>Log templates of <see cref="ProbeRunner"/>. Targets and reasons carry no secrets (probes keep passwords out of them).</summary>
internal static partial class ProbeRunnerLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "Probe {Probe} ({Kind} {Target}) is failing: {Reason}")]
    public static partial void Failing(ILogger logger, string probe, string kind, string target, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "Probe {Probe} failed {Failures} runs in a row: {Reason}")]
    public static partial void StillFailing(ILogger logger, string probe, long failures, string reason);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Probe {Probe} ({Kind} {Target}) is ok again after {Failures} failed runs ({LatencyMs:0.#} ms)")]
    public static partial void Recovered(ILogger logger, string probe, string kind, string target, long failures, double latencyMs);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Probe {Probe} ran {DurationMs} ms, longer than its {Interval} interval; skipped {Skipped} runs")]
    public static partial void Skipped(ILogger logger, string probe, long durationMs, TimeSpan interval, long skipped);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "Probe {Probe} ({Kind}) threw instead of returning a result")]
    public static partial void ProbeThrew(ILogger logger, Exception exception, string probe, string kind);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "The result of probe {Probe} could not be handed on")]
    public static partial void SinkFailed(ILogger logger, Exception exception, string probe);
}
