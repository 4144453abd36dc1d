using Microsoft.Extensions.Logging;

namespace Fleet.Agent.Collectors;

/// <summary>Log templates of <see cref="CollectorRunner"/>. Each distinct problem is logged once per runner.</summary>
internal static partial class CollectorRunnerLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning,
        Message = "Collector {Collector} failed: {Error} (logged once; further failures are only counted)")]
    public static partial void Failed(ILogger logger, Exception exception, string collector, string error);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning,
        Message = "Collector {Collector} timed out after {TimeoutMs} ms and was cancelled (logged once; further timeouts are only counted)")]
    public static partial void TimedOut(ILogger logger, string collector, long timeoutMs);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning,
        Message = "Collector {Collector} was still running at the next tick; the tick was skipped (logged once; further skips are only counted)")]
    public static partial void Skipped(ILogger logger, string collector);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning,
        Message = "Samples of collector {Collector} could not be handed on: {Error} (logged once; further failures are only counted)")]
    public static partial void SinkFailed(ILogger logger, Exception exception, string collector, string error);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information,
        Message = "Collector {Collector} watches its source and collects as soon as it changes (the interval stays the fallback)")]
    public static partial void Watching(ILogger logger, string collector);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning,
        Message = "Collector {Collector} cannot watch its source: {Error}; it collects on its interval and retries the watch at every tick (logged once)")]
    public static partial void WatchUnavailable(ILogger logger, Exception exception, string collector, string error);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning,
        Message = "Collector {Collector}'s watch reported an error: {Error}; collecting now, the interval covers anything missed (logged once)")]
    public static partial void WatchFailed(ILogger logger, Exception exception, string collector, string error);
}
