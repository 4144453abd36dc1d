using System.Text.RegularExpressions;

namespace Fleet.Agent.Logs;

/// <summary>The <c>logs</c> section of agent.json: what to tail and how to ship it.</summary>
public sealed class LogSettings
{
    public const int DefaultBatchMaxBytes = 256 * 1024;

    /// <summary>Batches stay well under the 1 MiB the brief allows (and far under the transport's message limit).</summary>
    public const int MaxBatchMaxBytes = 1024 * 1024 - 64 * 1024;

    /// <summary>Every user-supplied regex gets this match timeout, so a pathological one cannot hang the agent.</summary>
    public static readonly TimeSpan RegexTimeout = TimeSpan.FromMilliseconds(100);

    public List<LogSourceSettings> Sources { get; set; } = [];

    /// <summary>Extra redaction patterns (each match becomes "***"), applied after the built-in ones.</summary>
    public List<Regex> Redact { get; set; } = [];

    public int BatchMaxBytes { get; set; } = DefaultBatchMaxBytes;

    public TimeSpan BatchMaxDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Reconcile scan of the globs (inotify is only the fast path). Not in agent.json.</summary>
    public TimeSpan ScanInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How often open files are checked for new data when no inotify event arrives. Not in agent.json.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>A last line without a newline is shipped after waiting this long for the rest. Not in agent.json.</summary>
    public TimeSpan PartialLineTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A multiline entry is shipped when no continuation line arrived for this long. Not in agent.json.</summary>
    public TimeSpan MultilineTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Lines longer than this are split; a partial line this long is shipped at once.</summary>
    public int MaxLineBytes { get; set; } = 64 * 1024;

    public static Regex CreateRegex(string pattern) =>
        new(pattern, RegexOptions.CultureInvariant, RegexTimeout);
}

public enum LogStartAt
{
    /// <summary>Existing files at the very first start are read from their end; files created later from the beginning.</summary>
    Default,
    End,
    Beginning,
}

/// <summary>One source: a file glob or a systemd unit's journal.</summary>
public sealed class LogSourceSettings
{
    public required string Name { get; init; }

    /// <summary>An absolute glob ('*' and '?' within a segment, '**' across segments); null for a journal source.</summary>
    public string? Path { get; init; }

    /// <summary>A systemd unit whose journal is followed; null for a file source.</summary>
    public string? JournalUnit { get; init; }

    /// <summary>A line NOT matching this continues the previous entry.</summary>
    public Regex? MultilineStart { get; init; }

    public Regex? Include { get; init; }

    public Regex? Exclude { get; init; }

    /// <summary>A fixed severity (error|warn|info|debug); null: parsed from the entry.</summary>
    public string? Severity { get; init; }

    /// <summary>Named groups become the entry's fields.</summary>
    public Regex? Pattern { get; init; }

    public LogStartAt StartAt { get; init; }

    /// <summary>Take the entry's time from the line when it starts with one (<see cref="LogTime"/>); else, or when false
    /// (<c>"timeFormat": "none"</c>), the time it was read.</summary>
    public bool ParseTime { get; init; } = true;
}
