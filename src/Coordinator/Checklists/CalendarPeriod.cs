using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Fleet.Coordinator.Checklists;

/// <summary>How often a checklist item is due.</summary>
public enum PeriodKind { Daily, Weekly, Monthly, Quarterly }

/// <summary>
/// One UTC calendar period: a day (2026-11-28), an ISO 8601 week (2026-W48, Monday to Sunday, in its ISO week-year),
/// a month (2026-11) or a quarter (2026-Q4). <see cref="Start"/> is inclusive, <see cref="End"/> exclusive.
/// </summary>
public readonly partial record struct CalendarPeriod(PeriodKind Kind, DateTime Start, DateTime End, string Text)
{
    public static readonly PeriodKind[] Kinds = [PeriodKind.Daily, PeriodKind.Weekly, PeriodKind.Monthly, PeriodKind.Quarterly];

    public const string Formats = "YYYY-MM-DD, YYYY-Www (ISO week), YYYY-MM or YYYY-Qn";

    public bool Contains(DateTime utc) => utc >= Start && utc < End;

    public bool IsOver(DateTimeOffset now) => now.UtcDateTime >= End;

    public override string ToString() => Text;

    /// <summary>The period of <paramref name="kind"/> that contains <paramref name="instant"/> (taken in UTC).</summary>
    public static CalendarPeriod Containing(PeriodKind kind, DateTimeOffset instant)
    {
        var utc = instant.UtcDateTime;
        var day = new DateTime(utc.Year, utc.Month, utc.Day, 0, 0, 0, DateTimeKind.Utc);
        switch (kind)
        {
            case PeriodKind.Daily:
                return Day(day);
            case PeriodKind.Weekly:
                var year = ISOWeek.GetYear(day);
                return Week(year, ISOWeek.GetWeekOfYear(day));
            case PeriodKind.Monthly:
                return Month(day.Year, day.Month);
            case PeriodKind.Quarterly:
                return Quarter(day.Year, (day.Month - 1) / 3 + 1);
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, null);
        }
    }

    /// <summary>The period just before this one (of the same kind).</summary>
    public CalendarPeriod Previous() => Containing(Kind, new DateTimeOffset(Start.AddTicks(-1), TimeSpan.Zero));

    /// <summary>Parses the canonical forms (case-insensitive 'W' and 'Q'); false for anything else, including 2026-W54 or 2026-02-30.</summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out CalendarPeriod? period)
    {
        period = null;
        var match = Pattern().Match(text?.Trim() ?? "");
        if (!match.Success) return false;
        var year = int.Parse(match.Groups["year"].Value, CultureInfo.InvariantCulture);
        if (year < 1900 || year > 9998) return false;
        if (match.Groups["week"].Success)
        {
            var week = int.Parse(match.Groups["week"].Value, CultureInfo.InvariantCulture);
            if (week < 1 || week > ISOWeek.GetWeeksInYear(year)) return false;
            period = Week(year, week);
        }
        else if (match.Groups["quarter"].Success)
        {
            var quarter = int.Parse(match.Groups["quarter"].Value, CultureInfo.InvariantCulture);
            if (quarter is < 1 or > 4) return false;
            period = Quarter(year, quarter);
        }
        else
        {
            var month = int.Parse(match.Groups["month"].Value, CultureInfo.InvariantCulture);
            if (month is < 1 or > 12) return false;
            if (!match.Groups["day"].Success)
            {
                period = Month(year, month);
            }
            else
            {
                var d = int.Parse(match.Groups["day"].Value, CultureInfo.InvariantCulture);
                if (d < 1 || d > DateTime.DaysInMonth(year, month)) return false;
                period = Day(new DateTime(year, month, d, 0, 0, 0, DateTimeKind.Utc));
            }
        }
        return true;
    }

    public static string KindName(PeriodKind kind) => kind.ToString().ToLowerInvariant();

    public static bool TryParseKind(string? text, out PeriodKind kind)
    {
        kind = default;
        foreach (var k in Kinds)
        {
            if (string.Equals(text, KindName(k), StringComparison.Ordinal))
            {
                kind = k;
                return true;
            }
        }
        return false;
    }

    static CalendarPeriod Day(DateTime day) =>
        new(PeriodKind.Daily, day, day.AddDays(1), day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture));

    static CalendarPeriod Week(int isoYear, int week)
    {
        var start = DateTime.SpecifyKind(ISOWeek.ToDateTime(isoYear, week, DayOfWeek.Monday), DateTimeKind.Utc);
        return new(PeriodKind.Weekly, start, start.AddDays(7), string.Create(CultureInfo.InvariantCulture, $"{isoYear:D4}-W{week:D2}"));
    }

    static CalendarPeriod Month(int year, int month)
    {
        var start = new DateTime(year, month, 1, 0, 0, 0, DateTimeKind.Utc);
        return new(PeriodKind.Monthly, start, start.AddMonths(1), string.Create(CultureInfo.InvariantCulture, $"{year:D4}-{month:D2}"));
    }

    static CalendarPeriod Quarter(int year, int quarter)
    {
        var start = new DateTime(year, (quarter - 1) * 3 + 1, 1, 0, 0, 0, DateTimeKind.Utc);
        return new(PeriodKind.Quarterly, start, start.AddMonths(3), string.Create(CultureInfo.InvariantCulture, $"{year:D4}-Q{quarter}"));
    }

    [GeneratedRegex(@"^(?<year>\d{4})-(?:[Ww](?<week>\d{2})|[Qq](?<quarter>\d)|(?<month>\d{2})(?:-(?<day>\d{2}))?)$")]
    private static partial Regex Pattern();
}
