using System.Text.RegularExpressions;
using Fleet.Agent.Tasks;
using Fleet.Protocol.V1;

namespace Fleet.Agent.Logs;

/// <summary>
/// Turns a raw entry into what is shipped: include/exclude filter, severity (fixed or parsed), named groups of the
/// source's pattern as fields, and redaction (built-in credential patterns plus the configured ones). A regex that
/// times out counts as "no match" (and is counted), so a pathological pattern slows a line down but never hangs.
/// </summary>
public sealed partial class LogEntryProcessor(LogSourceSettings source, IReadOnlyList<Regex> redact, LogCounters counters)
{
    static readonly SecretMasker Masker = new([]);

    /// <summary>
    /// Every built-in credential pattern needs one of these hints (ignoring ASCII case): an ASCII line without any cannot
    /// match, so it skips the masker's regexes (the most expensive step per line before this check). Each hint names one
    /// of its less common characters, its anchor: a vectorised scan for the anchors (both cases) finds the few places
    /// where a hint can be, each checked in place. A <c>SearchValues&lt;string&gt;</c> over the hints took 13 % of the
    /// agent's CPU in the NativeAOT build (its case-insensitive Aho-Corasick without a fast scan, ~0.8 µs a line); this
    /// finds the same lines.
    /// </summary>
    static readonly (string Hint, int Anchor)[] Hints =
        [("passw", 4), ("pwd", 1), ("secret", 2), ("token", 2), ("key", 0), ("authorization", 7), ("://", 0)];

    internal static readonly string[] CredentialHints = [.. Hints.Select(h => h.Hint)];

    static readonly System.Buffers.SearchValues<char> HintAnchors = System.Buffers.SearchValues.Create(
        [.. Hints.SelectMany(h => new[] { char.ToLowerInvariant(h.Hint[h.Anchor]), char.ToUpperInvariant(h.Hint[h.Anchor]) }).Distinct()]);

    /// <summary>The entry ready to ship, or null when the source's include/exclude filter drops it.</summary>
    public LogEntry? Process(string message, string path, string fileId, long offset, string cursor, long timeUnixMs, string? severityHint)
    {
        if (source.Include is { } include && !IsMatch(include, message)) return null;
        if (source.Exclude is { } exclude && IsMatch(exclude, message)) return null;
        var entry = new LogEntry
        {
            Source = source.Name,
            Path = path,
            FileId = fileId,
            Offset = (ulong)offset,
            Cursor = cursor,
            TimeUnixMs = timeUnixMs,
            Severity = source.Severity ?? severityHint ?? ParseSeverity(message),
            Message = Redact(message),
        };
        if (source.Pattern is { } pattern)
        {
            var match = Match(pattern, message);
            if (match is { Success: true })
                foreach (Group group in match.Groups)
                    if (group.Success && !char.IsDigit(group.Name[0]))
                        entry.Fields[group.Name] = Redact(group.Value);
        }
        return entry;
    }

    /// <summary>Whether a line starts a new entry (no multiline rule, or the rule matches; a timeout starts one too).</summary>
    public bool StartsEntry(string line)
    {
        if (source.MultilineStart is not { } start) return true;
        try { return start.IsMatch(line); }
        catch (RegexMatchTimeoutException) { counters.RegexTimedOut(); return true; }
    }

    public string Redact(string text)
    {
        if (!System.Text.Ascii.IsValid(text) || HasCredentialHint(text)) text = Masker.Apply(text);
        foreach (var regex in redact)
        {
            try { text = regex.Replace(text, SecretMasker.Mask); }
            catch (RegexMatchTimeoutException)
            {
                // Not knowing what to hide, hide everything rather than ship a secret.
                counters.RegexTimedOut();
                return SecretMasker.Mask;
            }
        }
        return text;
    }

    /// <summary>Whether <paramref name="text"/> contains one of <see cref="CredentialHints"/>, ignoring ASCII case.</summary>
    internal static bool HasCredentialHint(ReadOnlySpan<char> text)
    {
        var from = 0;
        while (true)
        {
            var found = text[from..].IndexOfAny(HintAnchors);
            if (found < 0) return false;
            var at = from + found;
            var anchor = (char)(text[at] | 0x20); // ASCII lower case (':' stays ':')
            foreach (var (hint, offset) in Hints)
                if (hint[offset] == anchor && HintAt(text, at - offset, hint)) return true;
            from = at + 1;
        }
    }

    static bool HintAt(ReadOnlySpan<char> text, int start, string hint) =>
        start >= 0 && start + hint.Length <= text.Length && System.Text.Ascii.EqualsIgnoreCase(text.Slice(start, hint.Length), hint);

    /// <summary>ERROR/ERR/FATAL/CRIT → error, WARN/WARNING → warn, INFO/NOTICE → info, DEBUG/TRACE → debug, else "".</summary>
    public static string ParseSeverity(string message)
    {
        // Allocation-free (per line): the first match as a span, classified ignoring ASCII case (every word the
        // regex matches is ASCII), instead of a Match object, a substring and an upper-cased copy.
        var text = message.AsSpan(0, Math.Min(message.Length, 1024));
        foreach (var match in SeverityWord().EnumerateMatches(text))
        {
            var word = text.Slice(match.Index, match.Length);
            if (Is(word, "ERROR") || Is(word, "ERR") || Is(word, "FATAL") || Is(word, "CRIT") || Is(word, "CRITICAL") || Is(word, "EMERG") || Is(word, "ALERT"))
                return "error";
            if (Is(word, "WARN") || Is(word, "WARNING")) return "warn";
            if (Is(word, "INFO") || Is(word, "NOTICE")) return "info";
            return "debug";
        }
        return "";

        static bool Is(ReadOnlySpan<char> word, string name) => System.Text.Ascii.EqualsIgnoreCase(word, name);
    }

    /// <summary>syslog PRIORITY (0-7) → severity.</summary>
    public static string FromPriority(string? priority) => priority switch
    {
        "0" or "1" or "2" or "3" => "error",
        "4" => "warn",
        "5" or "6" => "info",
        "7" => "debug",
        _ => "",
    };

    bool IsMatch(Regex regex, string text)
    {
        try { return regex.IsMatch(text); }
        catch (RegexMatchTimeoutException) { counters.RegexTimedOut(); return false; }
    }

    Match? Match(Regex regex, string text)
    {
        try { return regex.Match(text); }
        catch (RegexMatchTimeoutException) { counters.RegexTimedOut(); return null; }
    }

    [GeneratedRegex(@"\b(?:ERROR|ERR|FATAL|CRIT|CRITICAL|EMERG|ALERT|WARN|WARNING|INFO|NOTICE|DEBUG|TRACE|Error|Warning|Info|Debug|error|warning|warn|info|debug)\b")]
    private static partial Regex SeverityWord();
}

/// <summary>Self-metrics of log shipping (thread-safe).</summary>
public sealed class LogCounters
{
    long linesRead, bytesRead, entriesShipped, batchesShipped, batchesDropped, filesOpen, rotations, truncations, regexTimeouts, checkpointsDiscarded, journalRestarts;

    public long LinesRead => Interlocked.Read(ref linesRead);
    public long BytesRead => Interlocked.Read(ref bytesRead);
    public long EntriesShipped => Interlocked.Read(ref entriesShipped);
    public long BatchesShipped => Interlocked.Read(ref batchesShipped);
    /// <summary>Batches the outbox would not store (full disk, too large); the checkpoint advanced past them.</summary>
    public long BatchesDropped => Interlocked.Read(ref batchesDropped);
    public long FilesOpen => Interlocked.Read(ref filesOpen);
    /// <summary>Open files that left their path (renamed or deleted) and were drained.</summary>
    public long Rotations => Interlocked.Read(ref rotations);
    public long Truncations => Interlocked.Read(ref truncations);
    public long RegexTimeouts => Interlocked.Read(ref regexTimeouts);
    public long CheckpointsDiscarded => Interlocked.Read(ref checkpointsDiscarded);
    public long JournalRestarts => Interlocked.Read(ref journalRestarts);

    internal void Read(long lines, long bytes) { Interlocked.Add(ref linesRead, lines); Interlocked.Add(ref bytesRead, bytes); }
    internal void Shipped(int entries) { Interlocked.Add(ref entriesShipped, entries); Interlocked.Increment(ref batchesShipped); }
    internal void Dropped() => Interlocked.Increment(ref batchesDropped);
    internal void Opened() => Interlocked.Increment(ref filesOpen);
    internal void Closed() => Interlocked.Decrement(ref filesOpen);
    internal void Rotated() => Interlocked.Increment(ref rotations);
    internal void Truncated() => Interlocked.Increment(ref truncations);
    internal void RegexTimedOut() => Interlocked.Increment(ref regexTimeouts);
    internal void CheckpointDiscarded() => Interlocked.Increment(ref checkpointsDiscarded);
    internal void JournalRestarted() => Interlocked.Increment(ref journalRestarts);
}
