using System.Text;

namespace Fleet.Cli.Output;

/// <summary>
/// RFC 4180 CSV: records end with CRLF; a field containing a comma, a double quote, CR or LF is enclosed in
/// double quotes with its quotes doubled; every other field is written as is.
/// </summary>
internal static class Csv
{
    private static readonly char[] NeedsQuoting = [',', '"', '\r', '\n'];

    public static async Task WriteRecordAsync(TextWriter writer, IReadOnlyList<string> fields, CancellationToken cancellationToken)
    {
        var line = new StringBuilder();
        for (var i = 0; i < fields.Count; i++)
        {
            if (i > 0) line.Append(',');
            AppendField(line, fields[i]);
        }
        line.Append("\r\n");
        await writer.WriteAsync(line, cancellationToken);
    }

    private static void AppendField(StringBuilder line, string value)
    {
        if (value.IndexOfAny(NeedsQuoting) < 0)
        {
            line.Append(value);
            return;
        }
        line.Append('"').Append(value.Replace("\"", "\"\"", StringComparison.Ordinal)).Append('"');
    }
}
