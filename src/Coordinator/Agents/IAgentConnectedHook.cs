namespace Fleet.Coordinator.Agents;

/// <summary>Called after an agent's stream got its welcome: features hand the agent work it should have (redelivery).</summary>
public interface IAgentConnectedHook
{
    Task AgentConnectedAsync(AgentSession session, CancellationToken cancellationToken);
}
