using System.Globalization;

namespace Fleet.Cli;

/// <summary>Human durations on the command line: "500ms", "10s", "2m", "1h", "1m30s"; a bare number means seconds.</summary>
internal static class DurationText
{
    public static bool TryParse(string text, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        var s = text.Trim().ToLowerInvariant();
        if (s.Length == 0) return false;
        if (double.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var bareSeconds))
        {
            return TryFromSeconds(bareSeconds, out value);
        }

        var total = 0d;
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.')) i++;
            if (i == start) return false;
            if (!double.TryParse(s.AsSpan(start, i - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number)) return false;
            var unitStart = i;
            while (i < s.Length && char.IsAsciiLetterLower(s[i])) i++;
            double? seconds = s[unitStart..i] switch
            {
                "ms" => number / 1000,
                "s" => number,
                "m" => number * 60,
                "h" => number * 3600,
                _ => null,
            };
            if (seconds is null) return false;
            total += seconds.Value;
        }
        return TryFromSeconds(total, out value);
    }

    public static string Format(TimeSpan value) =>
        value.TotalSeconds < 1 ? $"{value.TotalMilliseconds:0}ms"
        : value.TotalMinutes < 1 ? $"{value.TotalSeconds:0.###}s"
        : value.TotalHours < 1 ? $"{value.TotalMinutes:0.##}m"
        : $"{value.TotalHours:0.##}h";

    private static bool TryFromSeconds(double seconds, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        if (double.IsNaN(seconds) || seconds < 0 || seconds > TimeSpan.MaxValue.TotalSeconds / 2) return false;
        value = TimeSpan.FromSeconds(seconds);
        return true;
    }
}
