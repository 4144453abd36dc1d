namespace Fleet.Agent.Collectors;

/// <summary>
/// A collector whose source can announce its own changes (the textfile directory through inotify), so that
/// <see cref="CollectorRunner"/> collects as soon as something changed instead of waiting for the next tick. The
/// interval stays the fallback: a change the watch misses is collected at the next tick.
/// </summary>
public interface IWatchableCollector : ICollector
{
    /// <summary>
    /// Starts watching the source until the result is disposed. <paramref name="changed"/> is called (on any thread,
    /// possibly many times in a burst) when the source may have changed; <paramref name="failed"/> when the watch
    /// reports a problem (an overflowed event queue: changes may have been missed). Both must return quickly.
    /// </summary>
    /// <exception cref="IOException">The watch could not be set up (e.g. the system's inotify limits).</exception>
    /// <exception cref="ArgumentException">The source does not exist (yet).</exception>
    IDisposable Watch(Action changed, Action<Exception> failed);
}
