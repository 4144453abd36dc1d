namespace Fleet.Coordinator.Agents;

/// <summary>How an operator names hosts everywhere (runs, maintenance windows, collector rules): by id or hostname, and by tags.</summary>
public static class AgentSelection
{
    /// <summary>The agent's id, or its hostname ignoring case.</summary>
    public static bool IsNamed(AgentRecord agent, string name) =>
        agent.Id == name || string.Equals(agent.Hostname, name, StringComparison.OrdinalIgnoreCase);

    /// <summary>Every selector's key is a tag with exactly that value.</summary>
    public static bool HasTags(IReadOnlyDictionary<string, string> tags, IEnumerable<KeyValuePair<string, string>> selectors) =>
        selectors.All(s => tags.TryGetValue(s.Key, out var v) && v == s.Value);
}
