namespace Fleet.Agent.Collectors;

/// <summary>Counters of one <see cref="CollectorRunner"/> since it started.</summary>
/// <param name="Runs">Collections started.</param>
/// <param name="Skipped">Ticks skipped because the previous collection was still running.</param>
/// <param name="TimedOut">Collections abandoned after the collector's timeout.</param>
/// <param name="Errors">Collections that failed (the collector or the sink threw).</param>
/// <param name="LastDuration">How long the last finished (or abandoned) collection took.</param>
public readonly record struct CollectorStats(long Runs, long Skipped, long TimedOut, long Errors, TimeSpan LastDuration);
