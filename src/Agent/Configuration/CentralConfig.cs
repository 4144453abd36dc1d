using Fleet.Protocol.V1;

namespace Fleet.Agent.Configuration;

/// <summary>
/// The configuration the coordinator hands this agent (in the welcome, and in config updates while connected).
/// Parts of the agent that honour central settings subscribe to <see cref="Changed"/>; the local agent.json stays
/// the fallback whenever the coordinator says nothing.
/// </summary>
public sealed class CentralConfig
{
    readonly Lock gate = new();
    AgentConfig current = new();

    public event Action<AgentConfig>? Changed;

    public AgentConfig Current { get { lock (gate) return current; } }

    public void Apply(AgentConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        lock (gate)
        {
            if (current.Equals(config)) return;
            current = config.Clone();
        }
        Changed?.Invoke(config);
    }
}
