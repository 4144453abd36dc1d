using System.Text;

namespace Fleet.Cli.Output;

/// <summary>A plain, left-aligned table with upper-case headers and two spaces between columns.</summary>
internal sealed class TextTable(params string[] headers)
{
    private readonly List<string[]> _rows = [];

    public void AddRow(params string[] cells)
    {
        if (cells.Length != headers.Length) throw new ArgumentException($"expected {headers.Length} cells, got {cells.Length}", nameof(cells));
        _rows.Add([.. cells.Select(Clean)]);
    }

    public void WriteTo(TextWriter writer, string indent = "")
    {
        var widths = headers.Select((h, i) => _rows.Select(r => r[i].Length).Append(h.Length).Max()).ToArray();
        WriteLine(writer, indent, headers, widths);
        foreach (var row in _rows) WriteLine(writer, indent, row, widths);
    }

    private static void WriteLine(TextWriter writer, string indent, string[] cells, int[] widths)
    {
        var line = new StringBuilder(indent);
        for (var i = 0; i < cells.Length; i++)
        {
            if (i > 0) line.Append("  ");
            line.Append(i == cells.Length - 1 ? cells[i] : cells[i].PadRight(widths[i]));
        }
        writer.WriteLine(line.ToString().TrimEnd());
    }

    // A cell is one line; an empty cell shows as "-" so columns stay readable and parseable with awk.
    private static string Clean(string? cell)
    {
        var text = (cell ?? "").ReplaceLineEndings(" ").Replace('\t', ' ').Trim();
        return text.Length == 0 ? "-" : text;
    }
}
