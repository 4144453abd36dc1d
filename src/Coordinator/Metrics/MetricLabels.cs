using System.Text;

namespace Fleet.Coordinator.Metrics;

/// <summary>The canonical form of a label set: sorted by name, "k=v" joined by ',', with '\', ',' and '=' escaped.</summary>
public static class MetricLabels
{
    public static string Canonical(IEnumerable<KeyValuePair<string, string>> labels)
    {
        var sb = new StringBuilder();
        foreach (var (k, v) in labels.OrderBy(l => l.Key, StringComparer.Ordinal))
        {
            if (sb.Length > 0) sb.Append(',');
            Escape(sb, k);
            sb.Append('=');
            Escape(sb, v);
        }
        return sb.ToString();
    }

    public static List<KeyValuePair<string, string>> Parse(string canonical)
    {
        var result = new List<KeyValuePair<string, string>>();
        if (canonical.Length == 0) return result;
        var key = new StringBuilder();
        var value = new StringBuilder();
        var current = key;
        for (var i = 0; i < canonical.Length; i++)
        {
            var c = canonical[i];
            if (c == '\\' && i + 1 < canonical.Length) { current.Append(canonical[++i]); continue; }
            if (c == '=' && current == key) { current = value; continue; }
            if (c == ',')
            {
                result.Add(new(key.ToString(), value.ToString()));
                key.Clear(); value.Clear(); current = key;
                continue;
            }
            current.Append(c);
        }
        result.Add(new(key.ToString(), value.ToString()));
        return result;
    }

    static void Escape(StringBuilder sb, string s)
    {
        foreach (var c in s)
        {
            if (c is '\\' or ',' or '=') sb.Append('\\');
            sb.Append(c);
        }
    }
}
