using System.Text;

namespace Fleet.Cli.Output;

/// <summary>A one-line chart of a series with the block characters ▁▂▃▄▅▆▇█, scaled from the series' minimum to its maximum.</summary>
internal static class Sparkline
{
    private const string Blocks = "▁▂▃▄▅▆▇█";

    /// <summary>
    /// One character per value, or per bucket of consecutive values (their average) when there are more values
    /// than <paramref name="width"/>. A flat series is drawn at the lowest level; a value that is not a number
    /// (or a bucket of them) is a space.
    /// </summary>
    public static string Render(IReadOnlyList<double> values, int width)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        var columns = Downsample(values, width);
        var finite = columns.Where(double.IsFinite).ToList();
        if (finite.Count == 0) return new string(' ', columns.Count);

        var min = finite.Min();
        var range = finite.Max() - min;
        var line = new StringBuilder(columns.Count);
        foreach (var value in columns)
        {
            if (!double.IsFinite(value))
            {
                line.Append(' ');
                continue;
            }
            var level = range > 0 ? (int)Math.Round((value - min) / range * (Blocks.Length - 1), MidpointRounding.AwayFromZero) : 0;
            line.Append(Blocks[Math.Clamp(level, 0, Blocks.Length - 1)]);
        }
        return line.ToString();
    }

    /// <summary>At most <paramref name="width"/> values: bucket i averages values [i·n/width, (i+1)·n/width), ignoring non-numbers.</summary>
    internal static List<double> Downsample(IReadOnlyList<double> values, int width)
    {
        if (values.Count <= width) return [.. values];
        var buckets = new List<double>(width);
        for (var i = 0; i < width; i++)
        {
            var start = (int)((long)i * values.Count / width);
            var end = (int)((long)(i + 1) * values.Count / width);
            var sum = 0d;
            var count = 0;
            for (var j = start; j < end; j++)
            {
                if (!double.IsFinite(values[j])) continue;
                sum += values[j];
                count++;
            }
            buckets.Add(count == 0 ? double.NaN : sum / count);
        }
        return buckets;
    }
}
