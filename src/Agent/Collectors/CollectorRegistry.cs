using System.Collections.Frozen;

namespace Fleet.Agent.Collectors;

/// <summary>Collector factories by name. Configuration names collectors; this turns a name into an instance.</summary>
public sealed class CollectorRegistry
{
    private readonly FrozenDictionary<string, Func<CollectorSettings, ICollector>> _factories;

    public CollectorRegistry(IEnumerable<KeyValuePair<string, Func<CollectorSettings, ICollector>>> factories)
    {
        _factories = factories.ToFrozenDictionary(StringComparer.Ordinal);
        Names = [.. _factories.Keys.Order(StringComparer.Ordinal)];
    }

    /// <summary>Every built-in collector.</summary>
    public static CollectorRegistry Default { get; } = new(new Dictionary<string, Func<CollectorSettings, ICollector>>
    {
        ["cpu"] = settings => new CpuCollector(settings),
        ["memory"] = settings => new MemoryCollector(settings),
        ["disk"] = settings => new DiskCollector(settings),
        ["load"] = settings => new LoadCollector(settings),
        ["network"] = settings => new NetworkCollector(settings),
        ["process"] = settings => new ProcessCollector(settings),
        ["textfile"] = settings => new TextfileCollector(settings),
    });

    /// <summary>The registered names, sorted.</summary>
    public IReadOnlyCollection<string> Names { get; }

    /// <exception cref="ArgumentException">No collector has that name, or the settings do not suit it.</exception>
    public ICollector Create(string name, CollectorSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (name is null || !_factories.TryGetValue(name, out var factory))
        {
            throw new ArgumentException($"Unknown collector '{name}'. Known collectors: {string.Join(", ", Names)}.", nameof(name));
        }
        return factory(settings);
    }
}
