using System.Text;
using System.Text.RegularExpressions;

namespace Fleet.Agent.Logs;

/// <summary>
/// A file source's path pattern: absolute, '*' and '?' within one segment, '**' across segments. Expanded by listing
/// the literal directory prefix (the part before the first wildcard); that directory is also what inotify watches.
/// </summary>
public sealed class FileGlob
{
    readonly Regex matcher;

    FileGlob(string pattern, string baseDirectory, bool recursive, Regex matcher)
    {
        Pattern = pattern;
        BaseDirectory = baseDirectory;
        Recursive = recursive;
        this.matcher = matcher;
    }

    public string Pattern { get; }

    /// <summary>The deepest directory without wildcards.</summary>
    public string BaseDirectory { get; }

    /// <summary>Whether a wildcard appears in a directory segment (the base directory is then listed recursively).</summary>
    public bool Recursive { get; }

    public bool IsMatch(string path) => matcher.IsMatch(path);

    public static bool TryCreate(string pattern, out FileGlob? glob, out string problem)
    {
        glob = null;
        problem = "";
        if (string.IsNullOrWhiteSpace(pattern) || !pattern.StartsWith('/') || pattern.EndsWith('/'))
        {
            problem = $"'{pattern}' must be an absolute file path or glob, e.g. /var/log/app/*.log";
            return false;
        }
        if (pattern.Split('/').Any(s => s is ".." or "."))
        {
            problem = $"'{pattern}' must not contain '.' or '..' segments";
            return false;
        }
        if (pattern.IndexOfAny(['[', ']', '{', '}']) >= 0)
        {
            problem = $"'{pattern}': only '*', '**' and '?' are supported as wildcards";
            return false;
        }
        var lastSlash = pattern.LastIndexOf('/');
        var firstWild = pattern.IndexOfAny(['*', '?']);
        var baseEnd = firstWild < 0 ? lastSlash : pattern.LastIndexOf('/', firstWild);
        var baseDirectory = baseEnd == 0 ? "/" : pattern[..baseEnd];
        var recursive = firstWild >= 0 && pattern.IndexOf('/', firstWild) >= 0;
        var regex = new StringBuilder(@"\A");
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            if (c == '*' && i + 1 < pattern.Length && pattern[i + 1] == '*')
            {
                regex.Append(".*");
                i++;
            }
            else if (c == '*') regex.Append("[^/]*");
            else if (c == '?') regex.Append("[^/]");
            else regex.Append(Regex.Escape(c.ToString()));
        }
        regex.Append(@"\z");
        glob = new FileGlob(pattern, baseDirectory, recursive, new Regex(regex.ToString(), RegexOptions.CultureInvariant | RegexOptions.NonBacktracking));
        return true;
    }

    public static FileGlob Create(string pattern) =>
        TryCreate(pattern, out var glob, out var problem) ? glob! : throw new ArgumentException(problem, nameof(pattern));

    static readonly EnumerationOptions Flat = new() { IgnoreInaccessible = true, AttributesToSkip = 0, ReturnSpecialDirectories = false };
    static readonly EnumerationOptions Deep = new() { IgnoreInaccessible = true, AttributesToSkip = 0, ReturnSpecialDirectories = false, RecurseSubdirectories = true, MaxRecursionDepth = 16 };

    /// <summary>The regular files matching now (missing directories give none).</summary>
    public List<string> Expand()
    {
        var paths = new List<string>();
        try
        {
            if (!Directory.Exists(BaseDirectory)) return paths;
            foreach (var path in Directory.EnumerateFiles(BaseDirectory, "*", Recursive ? Deep : Flat))
                if (matcher.IsMatch(path)) paths.Add(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        paths.Sort(StringComparer.Ordinal);
        return paths;
    }
}
