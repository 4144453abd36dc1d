using System.Text.RegularExpressions;

namespace Fleet.Agent.Logs;

/// <summary>The <c>logs</c> section as written in agent.json (validated into <see cref="LogSettings"/>).</summary>
public sealed class LogsConfigDocument
{
    public LogSourceConfigDocument[]? Sources { get; set; }
    public string[]? Redact { get; set; }
    public int? BatchMaxBytes { get; set; }
    public double? BatchMaxSeconds { get; set; }
}

public sealed class LogSourceConfigDocument
{
    public string? Name { get; set; }
    public string? Path { get; set; }
    public string? Journal { get; set; }
    public string? MultilineStart { get; set; }
    public string? Include { get; set; }
    public string? Exclude { get; set; }
    public string? Severity { get; set; }
    public string? Pattern { get; set; }
    public string? StartAt { get; set; }
    public string? TimeFormat { get; set; }
}

internal static partial class LogConfig
{
    static readonly string[] Severities = ["error", "warn", "info", "debug"];

    /// <summary>Validates the section; <paramref name="fail"/> throws with the key and the problem.</summary>
    public static LogSettings Validate(LogsConfigDocument doc, Func<string, string, string> fail)
    {
        var settings = new LogSettings();
        if (doc.BatchMaxBytes is { } bytes)
        {
            if (bytes is < 1024 or > LogSettings.MaxBatchMaxBytes) fail("logs.batchMaxBytes", $"{bytes} is out of range (1024 to {LogSettings.MaxBatchMaxBytes})");
            settings.BatchMaxBytes = bytes;
        }
        if (doc.BatchMaxSeconds is { } seconds)
        {
            if (seconds is < 0.01 or > 60) fail("logs.batchMaxSeconds", $"{seconds} is out of range (0.01 to 60)");
            settings.BatchMaxDelay = TimeSpan.FromSeconds(seconds);
        }
        for (var i = 0; i < (doc.Redact?.Length ?? 0); i++)
            settings.Redact.Add(Compile(doc.Redact![i], $"logs.redact[{i}]", fail)!);

        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < (doc.Sources?.Length ?? 0); i++)
        {
            var s = doc.Sources![i];
            var at = $"logs.sources[{i}]";
            if (s.Name is null || !SourceName().IsMatch(s.Name) || !names.Add(s.Name))
                fail($"{at}.name", $"'{s.Name}' must be 1-64 letters, digits, '_', '.' or '-', unique among log sources");
            if ((s.Path is null) == (s.Journal is null)) fail(at, "give exactly one of 'path' (a file glob) or 'journal' (a systemd unit)");
            if (s.Path is not null && !FileGlob.TryCreate(s.Path, out _, out var problem)) fail($"{at}.path", problem);
            if (s.Journal is not null && !UnitName().IsMatch(s.Journal)) fail($"{at}.journal", $"'{s.Journal}' is not a systemd unit name");
            if (s.Severity is not null && !Severities.Contains(s.Severity)) fail($"{at}.severity", $"'{s.Severity}' is not one of {string.Join(", ", Severities)}");
            var startAt = s.StartAt switch
            {
                null => LogStartAt.Default,
                "end" => LogStartAt.End,
                "beginning" => LogStartAt.Beginning,
                _ => (LogStartAt)(-1),
            };
            if ((int)startAt < 0) fail($"{at}.startAt", $"'{s.StartAt}' is not 'end' or 'beginning'");
            if (s.TimeFormat is not (null or "auto" or "none"))
                fail($"{at}.timeFormat", $"'{s.TimeFormat}' is not 'auto' (a time at the start of the line, else the read time) or 'none' (always the read time)");
            var pattern = Compile(s.Pattern, $"{at}.pattern", fail);
            if (pattern is not null && !pattern.GetGroupNames().Any(g => !int.TryParse(g, out _)))
                fail($"{at}.pattern", "the pattern has no named group (e.g. (?<ip>\\S+)) to turn into a field");
            settings.Sources.Add(new LogSourceSettings
            {
                Name = s.Name!,
                Path = s.Path,
                JournalUnit = s.Journal,
                MultilineStart = Compile(s.MultilineStart, $"{at}.multilineStart", fail),
                Include = Compile(s.Include, $"{at}.include", fail),
                Exclude = Compile(s.Exclude, $"{at}.exclude", fail),
                Severity = s.Severity,
                Pattern = pattern,
                StartAt = startAt,
                ParseTime = s.TimeFormat is null or "auto",
            });
        }
        return settings;
    }

    static Regex? Compile(string? pattern, string key, Func<string, string, string> fail)
    {
        if (pattern is null) return null;
        if (pattern.Length == 0) fail(key, "an empty regex matches everything; leave the key out instead");
        try { return LogSettings.CreateRegex(pattern); }
        catch (ArgumentException ex) { fail(key, $"invalid regex: {ex.Message}"); return null; }
    }

    [GeneratedRegex(@"\A[A-Za-z0-9_.-]{1,64}\z")]
    private static partial Regex SourceName();

    [GeneratedRegex(@"\A[A-Za-z0-9:_.@\\-]{1,256}\z")]
    private static partial Regex UnitName();
}
