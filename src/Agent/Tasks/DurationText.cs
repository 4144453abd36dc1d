using System.Globalization;

namespace Fleet.Agent.Tasks;

/// <summary>Durations as operators write them (the shared <see cref="Fleet.Protocol.Durations"/> syntax), and their short form.</summary>
public static class DurationText
{
    public static bool TryParse(string? text, out TimeSpan duration) => Fleet.Protocol.Durations.TryParse(text, out duration);

    /// <summary>"250ms", "30s", "5m", "1h30m".</summary>
    public static string Format(TimeSpan duration)
    {
        if (duration < TimeSpan.FromSeconds(1)) return string.Create(CultureInfo.InvariantCulture, $"{duration.TotalMilliseconds:0}ms");
        if (duration.TotalSeconds % 60 != 0 || duration < TimeSpan.FromMinutes(1)) return string.Create(CultureInfo.InvariantCulture, $"{duration.TotalSeconds:0.###}s");
        if (duration.TotalMinutes % 60 != 0 || duration < TimeSpan.FromHours(1)) return string.Create(CultureInfo.InvariantCulture, $"{duration.TotalMinutes:0}m");
        return string.Create(CultureInfo.InvariantCulture, $"{duration.TotalHours:0}h");
    }
}
