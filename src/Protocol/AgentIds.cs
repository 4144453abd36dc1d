using System.Text.RegularExpressions;

namespace Fleet.Protocol;

/// <summary>The one rule for what an agent id looks like (shared by the agent and the coordinator).</summary>
public static partial class AgentIds
{
    public const int MaxLength = 64;

    public static bool IsValid(string? id) => id is { Length: > 0 and <= MaxLength } && Pattern().IsMatch(id);

    public static string Describe(string field, string? id) =>
        $"{field}: '{Truncate(id)}' is not a valid agent id (1-{MaxLength} characters: lowercase letters, digits, '-', '_' or '.', starting with a letter or digit)";

    static string Truncate(string? value) => value is null ? "" : value.Length > 80 ? value[..80] + "…" : value;

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]*$")]
    private static partial Regex Pattern();
}
