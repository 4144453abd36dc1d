using System.Text;

namespace Fleet.Coordinator.Blobs;

/// <summary>
/// Blob key rules, the same for every store: 1-1024 characters of ASCII letters, digits and <c>/ . _ - = +</c>;
/// '/' separates segments; no leading '/', no trailing '/', no empty, '.' or '..' segments.
/// </summary>
public static class BlobKey
{
    public const int MaxLength = 1024;

    const string AllowedPunctuation = "/._-=+";

    /// <summary>Throws <see cref="ArgumentException"/> naming the key and what is wrong with it.</summary>
    public static void Validate(string key, string paramName = "key")
    {
        if (GetError(key, isPrefix: false) is { } error)
            throw new ArgumentException($"Invalid blob key {Describe(key)}: {error}.", paramName);
    }

    /// <summary>
    /// Validates a listing prefix: "" is allowed, and so are a trailing '/' and a partial last segment
    /// ("logs/2026-" or "logs/."); the complete segments before it follow the key rules.
    /// </summary>
    public static void ValidatePrefix(string prefix, string paramName = "prefix")
    {
        if (prefix is null) throw new ArgumentNullException(paramName, "The blob key prefix is null; use \"\" to list every blob.");
        if (prefix.Length == 0) return;
        if (GetError(prefix, isPrefix: true) is { } error)
            throw new ArgumentException($"Invalid blob key prefix {Describe(prefix)}: {error}.", paramName);
    }

    /// <summary>Whether <paramref name="key"/> is a valid key (no exception).</summary>
    public static bool IsValid(string? key) => GetError(key, isPrefix: false) is null;

    /// <summary>What is wrong with the key, or null when it is valid.</summary>
    internal static string? GetError(string? key, bool isPrefix)
    {
        if (string.IsNullOrEmpty(key)) return "the key is empty";
        if (key.Length > MaxLength) return $"it is {key.Length} characters long; the maximum is {MaxLength}";
        if (key[0] == '/') return "it starts with '/'; keys are relative, e.g. \"backups/2026-01-01.tar\"";
        for (var i = 0; i < key.Length; i++)
        {
            var c = key[i];
            if (c == '\\') return $"it contains a backslash at position {i}; separate segments with '/'";
            if (char.IsControl(c)) return $"it contains the control character U+{(int)c:X4} at position {i}";
            if (!char.IsAsciiLetterOrDigit(c) && !AllowedPunctuation.Contains(c))
                return $"it contains '{c}' at position {i}; allowed are ASCII letters, digits and / . _ - = +";
        }

        var segments = key.Split('/');
        // For a prefix the last segment may be partial (or empty after a trailing '/').
        var complete = isPrefix ? segments.Length - 1 : segments.Length;
        for (var i = 0; i < complete; i++)
        {
            switch (segments[i])
            {
                case "..": return "it contains a '..' segment";
                case ".": return "it contains a '.' segment";
                case "" when i == segments.Length - 1: return "it ends with '/'; a key names a blob, not a folder";
                case "": return "it contains an empty segment ('//')";
            }
        }
        return null;
    }

    /// <summary>The key quoted for an error message: control characters escaped, very long keys shortened.</summary>
    internal static string Describe(string? key)
    {
        if (key is null) return "(null)";
        const int shown = 120;
        var sb = new StringBuilder("'");
        foreach (var c in key.Length > shown ? key[..shown] : key)
        {
            if (char.IsControl(c)) sb.Append($"\\u{(int)c:X4}");
            else sb.Append(c);
        }
        sb.Append('\'');
        if (key.Length > shown) sb.Append($"… ({key.Length} characters)");
        return sb.ToString();
    }
}
