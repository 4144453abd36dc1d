using System.Globalization;

namespace Fleet.Agent.Tasks;

/// <summary>Durations as operators write them: "250ms", "30s", "5m", "1h30m", "2d"; a bare number is seconds.</summary>
public static class DurationText
{
    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var s = text.Trim();
        if (double.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var bare))
        {
            duration = TimeSpan.FromSeconds(bare);
            return true;
        }
        var total = TimeSpan.Zero;
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.')) i++;
            if (i == start || !double.TryParse(s.AsSpan(start, i - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value)) return false;
            var unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i])) i++;
            TimeSpan? unit = s[unitStart..i] switch
            {
                "ms" => TimeSpan.FromMilliseconds(1),
                "s" => TimeSpan.FromSeconds(1),
                "m" => TimeSpan.FromMinutes(1),
                "h" => TimeSpan.FromHours(1),
                "d" => TimeSpan.FromDays(1),
                _ => null,
            };
            if (unit is null) return false;
            total += unit.Value * value;
        }
        duration = total;
        return true;
    }

    /// <summary>"250ms", "30s", "5m", "1h30m".</summary>
    public static string Format(TimeSpan duration)
    {
        if (duration < TimeSpan.FromSeconds(1)) return string.Create(CultureInfo.InvariantCulture, $"{duration.TotalMilliseconds:0}ms");
        if (duration.TotalSeconds % 60 != 0 || duration < TimeSpan.FromMinutes(1)) return string.Create(CultureInfo.InvariantCulture, $"{duration.TotalSeconds:0.###}s");
        if (duration.TotalMinutes % 60 != 0 || duration < TimeSpan.FromHours(1)) return string.Create(CultureInfo.InvariantCulture, $"{duration.TotalMinutes:0}m");
        return string.Create(CultureInfo.InvariantCulture, $"{duration.TotalHours:0}h");
    }
}
