using System.Globalization;
using System.Text;

namespace Fleet.Agent.Collectors;

/// <summary>Reading and tokenising of procfs text: whole small files, whitespace-separated fields, unsigned counters.</summary>
internal static class ProcText
{
    private const int InitialBufferBytes = 16 * 1024;
    private const int MaxKeptBufferBytes = 1024 * 1024;

    [ThreadStatic]
    private static byte[]? t_buffer;

    /// <summary>
    /// Reads a whole procfs file into a string. procfs reports a size of 0, so this reads until end of file; the byte
    /// buffer is kept per thread, so a collection allocates little more than the strings (a scan of every process
    /// reads hundreds of files).
    /// </summary>
    public static string ReadFile(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var buffer = t_buffer ?? new byte[InitialBufferBytes];
        var length = 0;
        while (true)
        {
            if (length == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
            var read = RandomAccess.Read(handle, buffer.AsSpan(length), length);
            if (read == 0) break;
            length += read;
        }
        if (buffer.Length <= MaxKeptBufferBytes) t_buffer = buffer;
        return Encoding.UTF8.GetString(buffer, 0, length);
    }

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
