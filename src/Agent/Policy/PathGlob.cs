using System.Text;
using System.Text.RegularExpressions;

namespace Fleet.Agent.Policy;

/// <summary>
/// An allowed-path pattern of the local policy: absolute, '*' matches within one path segment, '**' across segments,
/// '?' one character. Matched against canonical paths only (see <see cref="Canonicalize"/>), so "..", "." and
/// symlinks cannot lead out of it. The literal directory prefix is itself canonicalised when it exists (a policy for
/// /var/log/** still matches when /var/log is a symlink).
/// </summary>
public sealed class PathGlob
{
    readonly Regex regex;

    PathGlob(string pattern, Regex regex)
    {
        Pattern = pattern;
        this.regex = regex;
    }

    public string Pattern { get; }

    public bool IsMatch(string canonicalPath) => regex.IsMatch(canonicalPath);

    public static bool TryCreate(string? pattern, out PathGlob? glob, out string problem)
    {
        glob = null;
        problem = "";
        if (string.IsNullOrWhiteSpace(pattern) || !pattern.StartsWith('/'))
        {
            problem = $"'{pattern}' must be an absolute path pattern, e.g. /var/log/**";
            return false;
        }
        if (pattern.Split('/').Any(s => s is ".." or "."))
        {
            problem = $"'{pattern}' must not contain '.' or '..' segments";
            return false;
        }
        var firstWild = pattern.IndexOfAny(['*', '?']);
        var literalEnd = firstWild < 0 ? pattern.Length : pattern.LastIndexOf('/', firstWild);
        var prefix = pattern[..literalEnd];
        var rest = pattern[literalEnd..];
        if (prefix.Length > 0 && Directory.Exists(prefix)) prefix = Canonicalize(prefix);
        var effective = prefix == "/" && rest.StartsWith('/') ? rest : prefix + rest;
        var regex = new StringBuilder(@"\A");
        for (var i = 0; i < effective.Length; i++)
        {
            var c = effective[i];
            if (c == '*' && i + 1 < effective.Length && effective[i + 1] == '*')
            {
                regex.Append(".*");
                i++;
            }
            else if (c == '*') regex.Append("[^/]*");
            else if (c == '?') regex.Append("[^/]");
            else regex.Append(Regex.Escape(c.ToString()));
        }
        regex.Append(@"\z"); // not "$": it also matches before a final "\n"
        glob = new PathGlob(pattern, new Regex(regex.ToString(), RegexOptions.CultureInvariant | RegexOptions.NonBacktracking));
        return true;
    }

    /// <summary>The absolute path with ".", ".." and every symlink (in any component) resolved, as realpath(3) does;
    /// components that do not exist are kept as written.</summary>
    /// <exception cref="PolicyDeniedException">Not absolute, or a symlink loop.</exception>
    public static string Canonicalize(string path)
    {
        if (!Path.IsPathRooted(path)) throw new PolicyDeniedException($"path '{path}' is not absolute");
        var current = Path.GetFullPath(path);
        for (var hops = 0; hops < 40; hops++)
        {
            var parts = current.Split('/', StringSplitOptions.RemoveEmptyEntries);
            var resolved = "/";
            var restarted = false;
            for (var i = 0; i < parts.Length; i++)
            {
                var next = Path.Combine(resolved, parts[i]);
                string? target;
                try { target = new FileInfo(next).LinkTarget; }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { target = null; }
                if (target is null)
                {
                    resolved = next;
                    continue;
                }
                var remainder = string.Join('/', parts.Skip(i + 1));
                var linked = Path.IsPathRooted(target) ? target : Path.Combine(resolved, target);
                current = Path.GetFullPath(remainder.Length > 0 ? linked + "/" + remainder : linked);
                restarted = true;
                break;
            }
            if (!restarted) return resolved;
        }
        throw new PolicyDeniedException($"path '{path}': too many levels of symbolic links");
    }
}
