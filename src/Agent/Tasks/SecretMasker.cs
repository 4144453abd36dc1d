using System.Text.RegularExpressions;

namespace Fleet.Agent.Tasks;

/// <summary>
/// Replaces secrets in a line of output with "***" before it leaves the host: the values of parameters marked secret,
/// and credentials by their look (password=..., passwd: ..., token=..., secret=..., api_key=..., Authorization: Bearer ...,
/// user:password@ in URLs).
/// </summary>
public sealed partial class SecretMasker(IReadOnlyList<string> secretValues)
{
    public const string Mask = "***";

    readonly string[] values = [.. secretValues.Where(v => v.Length > 0).Distinct(StringComparer.Ordinal).OrderByDescending(v => v.Length)];

    public string Apply(string text)
    {
        if (text.Length == 0) return text;
        foreach (var value in values) text = text.Replace(value, Mask, StringComparison.Ordinal);
        text = Authorization().Replace(text, "$1" + Mask);
        text = KeyValue().Replace(text, "$1$2$3" + Mask);
        return UrlCredentials().Replace(text, "$1" + Mask + "@");
    }

    [GeneratedRegex(@"(?i)(authorization\s*[:=]\s*(?:bearer|basic|token)?\s*)[^\s""',;]+")]
    private static partial Regex Authorization();

    [GeneratedRegex(@"(?i)\b((?:[a-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key))""?)(\s*[:=]\s*)(""?)(?!\*\*\*)[^\s""',;&]+")]
    private static partial Regex KeyValue();

    [GeneratedRegex(@"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@")]
    private static partial Regex UrlCredentials();
}
