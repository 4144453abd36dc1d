using System.ComponentModel.DataAnnotations;

namespace Fleet.Coordinator.Agents;

/// <summary>Section "Fleet:Agents": the agent stream.</summary>
public sealed class AgentsOptions : IValidatableObject
{
    public const string Section = "Fleet:Agents";

    /// <summary>How often agents send a heartbeat (handed to them in the welcome).</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>An agent that sent nothing for this long is offline and its stream is closed.</summary>
    public TimeSpan HeartbeatTimeout { get; set; } = TimeSpan.FromSeconds(35);

    /// <summary>How long a new stream may take to send its hello.</summary>
    public TimeSpan HelloTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Largest message accepted from an agent; a larger one fails only that stream.</summary>
    [Range(64 * 1024, 64 * 1024 * 1024)]
    public int MaxMessageBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>
    /// Central collector intervals, by tag: each rule whose tags all match an agent's tags sets the intervals of the
    /// collectors it names (later rules win). Sent in the welcome and, when this configuration changes, to every
    /// connected agent; collectors not named keep the interval from the agent's own config.
    /// </summary>
    public List<CollectorIntervalRule> CollectorIntervals { get; set; } = [];

    /// <summary>The collector intervals for an agent with these tags.</summary>
    public Dictionary<string, TimeSpan> CollectorIntervalsFor(IReadOnlyDictionary<string, string> tags)
    {
        var result = new Dictionary<string, TimeSpan>(StringComparer.Ordinal);
        foreach (var rule in CollectorIntervals)
            if (AgentSelection.HasTags(tags, rule.Tags))
                foreach (var (collector, interval) in rule.Intervals) result[collector] = interval;
        return result;
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        for (var i = 0; i < CollectorIntervals.Count; i++)
            foreach (var (collector, interval) in CollectorIntervals[i].Intervals)
            {
                if (string.IsNullOrWhiteSpace(collector))
                    yield return new($"Fleet:Agents:CollectorIntervals:{i}:Intervals: a collector name is empty.", [nameof(CollectorIntervals)]);
                else if (interval < TimeSpan.FromSeconds(1) || interval > TimeSpan.FromHours(1))
                    yield return new($"Fleet:Agents:CollectorIntervals:{i}:Intervals:{collector}: '{interval}' must be between 1 second and 1 hour.", [nameof(CollectorIntervals)]);
            }
        if (HeartbeatInterval < TimeSpan.FromMilliseconds(100))
            yield return new($"Fleet:Agents:HeartbeatInterval: '{HeartbeatInterval}' is too short (at least 100 ms).", [nameof(HeartbeatInterval)]);
        if (HeartbeatTimeout <= HeartbeatInterval)
            yield return new($"Fleet:Agents:HeartbeatTimeout: '{HeartbeatTimeout}' must be longer than HeartbeatInterval ('{HeartbeatInterval}').", [nameof(HeartbeatTimeout)]);
        if (HelloTimeout <= TimeSpan.Zero)
            yield return new($"Fleet:Agents:HelloTimeout: '{HelloTimeout}' must be positive.", [nameof(HelloTimeout)]);
    }
}

/// <summary>One central interval rule: for agents carrying all of <see cref="Tags"/>, these collector intervals.</summary>
public sealed class CollectorIntervalRule
{
    /// <summary>Tags the agent must carry (all of them); empty matches every agent.</summary>
    public Dictionary<string, string> Tags { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Collector name (cpu, memory, disk, load, network, process, textfile) → interval.</summary>
    public Dictionary<string, TimeSpan> Intervals { get; set; } = new(StringComparer.Ordinal);
}
