using System.Text;

namespace Fleet.Agent.Tasks;

/// <summary>
/// Bounds on what one TaskFinished carries, so it always fits a single message to the coordinator (whose limit is
/// 4 MiB) with room to spare. Output is not bounded here: it already goes out in chunks of
/// <see cref="InvocationOutput.ChunkBytes"/>.
/// </summary>
public static class ResultLimits
{
    public const int MaxSummaryBytes = 1024;
    public const int MaxErrorBytes = 4 * 1024;
    public const int MaxResultJsonBytes = 256 * 1024;

    /// <summary>A line a task puts in its result (e.g. a matched log line).</summary>
    public const int MaxLineBytes = 4 * 1024;

    public const string ClippedMarker = "…[clipped]";

    static readonly UTF8Encoding Utf8 = new(false);
    static readonly int MarkerBytes = Utf8.GetByteCount(ClippedMarker);

    /// <summary>The text when it fits <paramref name="maxBytes"/> in UTF-8; else its longest prefix that fits with
    /// <see cref="ClippedMarker"/> appended (never splitting a surrogate pair).</summary>
    public static string Clip(string text, int maxBytes)
    {
        if (text.Length <= maxBytes / 3 || Utf8.GetByteCount(text) <= maxBytes) return text;
        var budget = Math.Max(maxBytes - MarkerBytes, 0);
        int length = 0, bytes = 0;
        while (length < text.Length)
        {
            var width = char.IsHighSurrogate(text[length]) && length + 1 < text.Length && char.IsLowSurrogate(text[length + 1]) ? 2 : 1;
            var size = Utf8.GetByteCount(text.AsSpan(length, width));
            if (bytes + size > budget) break;
            bytes += size;
            length += width;
        }
        return string.Concat(text.AsSpan(0, length), ClippedMarker);
    }

    /// <summary>The result JSON when it fits <see cref="MaxResultJsonBytes"/>; else a small JSON object saying it was
    /// clipped and how large it was (cutting JSON would make it invalid).</summary>
    public static string BoundJson(string json)
    {
        if (json.Length <= MaxResultJsonBytes / 3) return json;
        var size = Utf8.GetByteCount(json);
        if (size <= MaxResultJsonBytes) return json;
        return ResultJson.Build(w =>
        {
            w.WriteStartObject();
            w.WriteBoolean("clipped", true);
            w.WriteNumber("originalBytes", size);
            w.WriteNumber("maxBytes", MaxResultJsonBytes);
            w.WriteEndObject();
        });
    }
}
