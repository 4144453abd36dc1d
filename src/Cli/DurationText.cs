using System.Globalization;

namespace Fleet.Cli;

/// <summary>Durations on the command line (the shared <see cref="Fleet.Protocol.Durations"/> syntax: "500ms", "10s", "1m30s", "2d"), and their display.</summary>
internal static class DurationText
{
    public static bool TryParse(string text, out TimeSpan value) => Fleet.Protocol.Durations.TryParse(text, out value);

    const double MaxAgeDays = 365_000;

    /// <summary>An age or window for --since, --until, --step, --watch: positive, at most <see cref="MaxAgeDays"/> days ("30d", "1d12h").</summary>
    public static bool TryParseAge(string text, out TimeSpan value) =>
        TryParse(text, out value) && value > TimeSpan.Zero && value.TotalDays <= MaxAgeDays;

    public static string Format(TimeSpan value) =>
        value.TotalSeconds < 1 ? $"{value.TotalMilliseconds:0}ms"
        : value.TotalMinutes < 1 ? $"{value.TotalSeconds:0.###}s"
        : value.TotalHours < 1 ? $"{value.TotalMinutes:0.##}m"
        : $"{value.TotalHours:0.##}h";
}
