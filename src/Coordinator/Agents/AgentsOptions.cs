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

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (HeartbeatInterval < TimeSpan.FromMilliseconds(100))
            yield return new($"Fleet:Agents:HeartbeatInterval: '{HeartbeatInterval}' is too short (at least 100 ms).", [nameof(HeartbeatInterval)]);
        if (HeartbeatTimeout <= HeartbeatInterval)
            yield return new($"Fleet:Agents:HeartbeatTimeout: '{HeartbeatTimeout}' must be longer than HeartbeatInterval ('{HeartbeatInterval}').", [nameof(HeartbeatTimeout)]);
        if (HelloTimeout <= TimeSpan.Zero)
            yield return new($"Fleet:Agents:HelloTimeout: '{HelloTimeout}' must be positive.", [nameof(HelloTimeout)]);
    }
}
