using System.Globalization;

namespace Fleet.Agent.Collectors;

/// <summary>Tokenising of procfs text: whitespace-separated fields, unsigned counters.</summary>
internal static class ProcText
{
    /// <summary>Cuts the next whitespace-separated token off <paramref name="rest"/>; false when none is left.</summary>
    public static bool NextToken(ref ReadOnlySpan<char> rest, out ReadOnlySpan<char> token)
    {
        rest = rest.TrimStart();
        if (rest.IsEmpty)
        {
            token = default;
            return false;
        }
        var end = rest.IndexOfAny(' ', '\t');
        if (end < 0) end = rest.Length;
        token = rest[..end];
        rest = rest[end..];
        return true;
    }

    /// <summary>The next token as an unsigned counter; false when there is none or it is not a number.</summary>
    public static bool NextUInt64(ref ReadOnlySpan<char> rest, out ulong value)
    {
        value = 0;
        return NextToken(ref rest, out var token) && ulong.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>The next token as a decimal number (as in /proc/loadavg).</summary>
    public static bool NextDouble(ref ReadOnlySpan<char> rest, out double value)
    {
        value = 0;
        return NextToken(ref rest, out var token) && double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>Skips <paramref name="count"/> tokens; false when fewer are left.</summary>
    public static bool Skip(ref ReadOnlySpan<char> rest, int count)
    {
        for (var i = 0; i < count; i++)
        {
            if (!NextToken(ref rest, out _)) return false;
        }
        return true;
    }
}
