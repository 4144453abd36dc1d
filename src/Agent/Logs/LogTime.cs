namespace Fleet.Agent.Logs;

/// <summary>
/// The time an entry carries, so stored entries are ordered and searched by when they happened rather than when they
/// were read (a backlog read after an outage keeps its real times). Recognised, without regexes (this runs per line):
/// <list type="bullet">
/// <item>ISO-8601 / RFC 3339 at the start of the line: <c>2026-11-28T22:01:02Z</c>, <c>2026-11-28 22:01:02,123</c>,
/// <c>2026-11-28T22:01:02.123456+01:00</c>, <c>+0100</c>; also nginx's error-log <c>2026/11/28 22:01:02</c>.</item>
/// <item>syslog (RFC 3164) at the start: <c>Nov 28 22:01:02</c> or <c>Nov  3 22:01:02</c>: the year is the current
/// one, or the previous one when that would put the entry more than a day in the future (read in January).</item>
/// <item>the common/combined log format anywhere in the first 256 characters (nginx and Apache access logs):
/// <c>[28/Nov/2026:22:01:02 +0000]</c>.</item>
/// </list>
/// A time without an offset is the host's local time (<see cref="TimeZoneInfo.Local"/>), as syslog and most
/// applications write it. Anything else, or an impossible date, yields null: the caller uses the read time.
/// </summary>
public static class LogTime
{
    const int ScanForBracket = 256;
    static readonly string[] Months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

    /// <summary>The entry's time in Unix milliseconds, or null when the line does not start with a recognised time.</summary>
    public static long? Parse(ReadOnlySpan<char> line, DateTimeOffset now, TimeZoneInfo? zone = null)
    {
        if (line.Length < 15) return null;
        zone ??= TimeZoneInfo.Local;
        var c = line[0];
        DateTimeOffset? parsed = null;
        if (IsDigit(c)) parsed = Iso(line, zone);
        else if (c is >= 'A' and <= 'S') parsed = Syslog(line, now, zone);
        if (parsed is null)
        {
            var head = line[..Math.Min(line.Length, ScanForBracket)];
            var bracket = head.IndexOf('[');
            while (bracket >= 0 && parsed is null)
            {
                parsed = CommonLog(head[(bracket + 1)..]);
                var next = head[(bracket + 1)..].IndexOf('[');
                bracket = next < 0 ? -1 : bracket + 1 + next;
            }
        }
        if (parsed is not { } time || time.Year is < 1971 or > 9998) return null;
        return time.ToUnixTimeMilliseconds();
    }

    /// <summary>yyyy-MM-dd[T ]HH:mm:ss[(.|,)fraction][Z|±HH[:]MM] (or yyyy/MM/dd).</summary>
    static DateTimeOffset? Iso(ReadOnlySpan<char> s, TimeZoneInfo zone)
    {
        if (s.Length < 19) return null;
        var separator = s[4];
        if (separator is not ('-' or '/') || s[7] != separator || s[10] is not ('T' or 't' or ' ') || s[13] != ':' || s[16] != ':') return null;
        if (!Number(s, 0, 4, out var year) || !Number(s, 5, 2, out var month) || !Number(s, 8, 2, out var day)
            || !Number(s, 11, 2, out var hour) || !Number(s, 14, 2, out var minute) || !Number(s, 17, 2, out var second))
            return null;
        var i = 19;
        long ticks = 0;
        if (i < s.Length && s[i] is '.' or ',')
        {
            i++;
            var digits = 0;
            long fraction = 0;
            while (i < s.Length && IsDigit(s[i]))
            {
                if (digits < 7) { fraction = fraction * 10 + (s[i] - '0'); digits++; }
                i++;
            }
            if (digits == 0) return null;
            for (var d = digits; d < 7; d++) fraction *= 10;
            ticks = fraction;
        }
        TimeSpan? offset = null;
        if (i < s.Length)
        {
            if (s[i] is 'Z' or 'z') offset = TimeSpan.Zero;
            else if (s[i] is '+' or '-' && Offset(s[i..], out var o)) offset = o;
        }
        return Build(year, month, day, hour, minute, second, ticks, offset, zone);
    }

    /// <summary>"Mmm dd HH:mm:ss" with the day space-padded or not.</summary>
    static DateTimeOffset? Syslog(ReadOnlySpan<char> s, DateTimeOffset now, TimeZoneInfo zone)
    {
        var month = Month(s[..3]);
        if (month == 0 || s[3] != ' ') return null;
        var i = 4;
        if (s[i] == ' ') i++;
        int day;
        if (i + 1 < s.Length && IsDigit(s[i]) && IsDigit(s[i + 1])) { day = (s[i] - '0') * 10 + (s[i + 1] - '0'); i += 2; }
        else if (IsDigit(s[i])) { day = s[i] - '0'; i++; }
        else return null;
        if (s.Length < i + 9 || s[i] != ' ' || s[i + 3] != ':' || s[i + 6] != ':') return null;
        if (!Number(s, i + 1, 2, out var hour) || !Number(s, i + 4, 2, out var minute) || !Number(s, i + 7, 2, out var second)) return null;
        var localNow = TimeZoneInfo.ConvertTime(now, zone);
        var time = Build(localNow.Year, month, day, hour, minute, second, 0, null, zone);
        if (time is { } t && t > now.AddDays(1)) time = Build(localNow.Year - 1, month, day, hour, minute, second, 0, null, zone);
        return time;
    }

    /// <summary>"dd/Mmm/yyyy:HH:mm:ss ±HHMM]".</summary>
    static DateTimeOffset? CommonLog(ReadOnlySpan<char> s)
    {
        if (s.Length < 26 || s[2] != '/' || s[6] != '/' || s[11] != ':' || s[14] != ':' || s[17] != ':' || s[20] != ' ') return null;
        var month = Month(s.Slice(3, 3));
        if (month == 0) return null;
        if (!Number(s, 0, 2, out var day) || !Number(s, 7, 4, out var year) || !Number(s, 12, 2, out var hour)
            || !Number(s, 15, 2, out var minute) || !Number(s, 18, 2, out var second) || !Offset(s[21..], out var offset))
            return null;
        return Build(year, month, day, hour, minute, second, 0, offset, TimeZoneInfo.Utc);
    }

    /// <summary>±HH:MM or ±HHMM.</summary>
    static bool Offset(ReadOnlySpan<char> s, out TimeSpan offset)
    {
        offset = default;
        if (s.Length < 5 || s[0] is not ('+' or '-')) return false;
        if (!Number(s, 1, 2, out var hours)) return false;
        var at = s[3] == ':' ? 4 : 3;
        if (s.Length < at + 2 || !Number(s, at, 2, out var minutes)) return false;
        if (hours > 14 || minutes > 59) return false;
        offset = new TimeSpan(hours, minutes, 0);
        if (s[0] == '-') offset = -offset;
        return true;
    }

    static DateTimeOffset? Build(int year, int month, int day, int hour, int minute, int second, long ticks, TimeSpan? offset, TimeZoneInfo zone)
    {
        if (year is < 1 or > 9998 || month is < 1 or > 12 || day < 1 || day > DateTime.DaysInMonth(year, month)
            || hour > 23 || minute > 59 || second > 60)
            return null;
        if (second == 60) second = 59; // a leap second
        var local = new DateTime(year, month, day, hour, minute, second, DateTimeKind.Unspecified).AddTicks(ticks);
        if (offset is { } o) return new DateTimeOffset(local, o);
        // A local time in a DST gap does not exist and one in the overlap is ambiguous: take the standard offset.
        return new DateTimeOffset(local, zone.IsInvalidTime(local) ? zone.BaseUtcOffset : zone.GetUtcOffset(local));
    }

    static bool Number(ReadOnlySpan<char> s, int start, int length, out int value)
    {
        value = 0;
        if (start + length > s.Length) return false;
        for (var i = start; i < start + length; i++)
        {
            if (!IsDigit(s[i])) return false;
            value = value * 10 + (s[i] - '0');
        }
        return true;
    }

    /// <summary>1-12 for "Jan".."Dec", else 0.</summary>
    static int Month(ReadOnlySpan<char> name)
    {
        for (var i = 0; i < Months.Length; i++)
            if (name.SequenceEqual(Months[i])) return i + 1;
        return 0;
    }

    static bool IsDigit(char c) => c is >= '0' and <= '9';
}
