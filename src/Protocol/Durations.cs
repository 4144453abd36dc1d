using System.Globalization;

namespace Fleet.Protocol;

/// <summary>
/// Durations as operators write them, the one syntax of the API, fleetctl, agent.json, the local policy and task
/// parameters: "250ms", "30s", "5m", "1h30m", "2d", "1.5h"; a bare number is seconds. Units are case-insensitive.
/// A total that no <see cref="TimeSpan"/> holds is not a duration (false, never an exception), so every side accepts
/// and refuses exactly the same texts.
/// </summary>
public static class Durations
{
    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var s = text.Trim();
        if (double.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var bare))
            return TryFromMilliseconds(bare * 1000, out duration);
        var totalMs = 0d;
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.')) i++;
            if (i == start || !double.TryParse(s.AsSpan(start, i - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value)) return false;
            var unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i])) i++;
            double? unitMs = s[unitStart..i].ToLowerInvariant() switch
            {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => null,
            };
            if (unitMs is null) return false;
            totalMs += value * unitMs.Value;
        }
        return TryFromMilliseconds(totalMs, out duration);
    }

    /// <summary>The canonical text: the largest whole unit, "30d", "2h", "90m", "45s", "250ms" (parses back to the same value).</summary>
    public static string Format(TimeSpan value) =>
        value.TotalDays >= 1 && value.TotalDays % 1 == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalDays:0}d")
        : value.TotalHours >= 1 && value.TotalHours % 1 == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalHours:0}h")
        : value.TotalMinutes >= 1 && value.TotalMinutes % 1 == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalMinutes:0}m")
        : value.TotalSeconds >= 1 && value.TotalSeconds % 1 == 0 ? string.Create(CultureInfo.InvariantCulture, $"{value.TotalSeconds:0}s")
        : string.Create(CultureInfo.InvariantCulture, $"{value.TotalMilliseconds:0.###}ms");

    static bool TryFromMilliseconds(double ms, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        if (double.IsNaN(ms) || ms < 0 || ms >= TimeSpan.MaxValue.TotalMilliseconds) return false;
        duration = TimeSpan.FromMilliseconds(ms);
        return true;
    }
}
