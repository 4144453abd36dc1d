namespace Fleet.Agent.Collectors;

/// <summary>
/// One source of metrics ("cpu", "memory", ...). A collector keeps whatever state it needs between collections
/// (previous counters for rates); <see cref="CollectorRunner"/> never runs one collector concurrently with itself,
/// so collectors need no locking.
/// </summary>
public interface ICollector
{
    /// <summary>The name it is registered under in <see cref="CollectorRegistry"/>.</summary>
    string Name { get; }

    /// <summary>Reads the source once and writes samples. Throws on failure; the runner counts and logs it.</summary>
    ValueTask CollectAsync(MetricWriter writer, CancellationToken cancellationToken);
}
