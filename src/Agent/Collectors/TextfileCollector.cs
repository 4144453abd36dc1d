using System.Globalization;
using System.Text;

namespace Fleet.Agent.Collectors;

/// <summary>
/// "textfile": samples that other programs leave in <c>*.prom</c> files of <see cref="CollectorSettings.TextfileDirectory"/>
/// (Prometheus text exposition: <c>name{label="value",...} value [timestamp]</c>; <c># HELP</c>, <c># TYPE</c> and other
/// comments ignored; <c>\\</c>, <c>\"</c> and <c>\n</c> unescaped in label values). Names and labels are kept as they are;
/// a timestamp is accepted but the collection's time is used. Also <c>textfile.files</c> (files read) and
/// <c>textfile.errors_total</c> labelled <c>file</c> (malformed lines skipped in that file; 1 for a file that could not be
/// read or is over 4 MiB).
/// <para>
/// Writers should write <c>name.prom.tmp</c> (or any name not ending in <c>.prom</c>) and rename it into place: each
/// file is read whole from one open, so a collection sees the old or the new content, never half of it.
/// </para>
/// <para>
/// <see cref="Watch"/> watches the directory (inotify, through <see cref="FileSystemWatcher"/>) for <c>*.prom</c> files
/// created, written, renamed (into or out of place) or deleted; a temporary file that does not end in <c>.prom</c> is
/// not reported until it is renamed into place.
/// </para>
/// </summary>
public sealed class TextfileCollector : IWatchableCollector
{
    internal const long MaxFileBytes = 4 * 1024 * 1024;

    private readonly string _directory;

    /// <exception cref="ArgumentException">No TextfileDirectory.</exception>
    public TextfileCollector(CollectorSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (string.IsNullOrWhiteSpace(settings.TextfileDirectory))
        {
            throw new ArgumentException("The textfile collector needs TextfileDirectory.", nameof(settings));
        }
        _directory = settings.TextfileDirectory;
    }

    public string Name => "textfile";

    /// <inheritdoc />
    public IDisposable Watch(Action changed, Action<Exception> failed)
    {
        ArgumentNullException.ThrowIfNull(changed);
        ArgumentNullException.ThrowIfNull(failed);
        var watcher = new FileSystemWatcher(_directory, "*.prom") // ArgumentException when the directory does not exist
        {
            IncludeSubdirectories = false,
            NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size,
        };
        try
        {
            FileSystemEventHandler onEvent = (_, _) => changed();
            watcher.Created += onEvent;
            watcher.Changed += onEvent;
            watcher.Deleted += onEvent;
            watcher.Renamed += (_, _) => changed(); // raised when the old or the new name matches: x.prom.tmp -> x.prom
            watcher.Error += (_, e) => failed(e.GetException());
            watcher.EnableRaisingEvents = true; // IOException when inotify's limits are reached
            return watcher;
        }
        catch
        {
            watcher.Dispose();
            throw;
        }
    }

    public ValueTask CollectAsync(MetricWriter writer, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var paths = Directory.GetFiles(_directory, "*.prom")
            .Where(p => p.EndsWith(".prom", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal);
        var files = 0;
        var labels = new List<KeyValuePair<string, string>>();
        foreach (var path in paths)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var file = Path.GetFileName(path);
            string text;
            try
            {
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.SequentialScan);
                if (stream.Length > MaxFileBytes)
                {
                    writer.Add("textfile.errors_total", 1, "file", file);
                    continue;
                }
                using var reader = new StreamReader(stream, Encoding.UTF8);
                text = reader.ReadToEnd();
            }
            catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
            {
                continue; // removed since it was listed
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                writer.Add("textfile.errors_total", 1, "file", file);
                continue;
            }

            files++;
            var errors = 0;
            foreach (var range in text.AsSpan().Split('\n'))
            {
                var line = text.AsSpan(range).Trim();
                if (line.IsEmpty || line[0] == '#') continue;
                labels.Clear();
                if (TryParseLine(line, labels, out var name, out var value)) writer.Add(name, value, labels);
                else errors++;
            }
            writer.Add("textfile.errors_total", errors, "file", file);
        }
        writer.Add("textfile.files", files);
        return ValueTask.CompletedTask;
    }

    /// <summary>Parses one sample line; false when it is malformed.</summary>
    internal static bool TryParseLine(ReadOnlySpan<char> line, List<KeyValuePair<string, string>> labels, out string name, out double value)
    {
        name = "";
        value = 0;
        var nameLength = 0;
        while (nameLength < line.Length && IsNameChar(line[nameLength], nameLength == 0, colonAllowed: true)) nameLength++;
        if (nameLength == 0) return false;
        name = line[..nameLength].ToString();
        var rest = line[nameLength..].TrimStart();

        if (!rest.IsEmpty && rest[0] == '{')
        {
            if (!TryParseLabels(ref rest, labels)) return false;
            rest = rest.TrimStart();
        }
        else if (rest.Length == line.Length - nameLength)
        {
            return false; // the name runs into something that is neither a label set nor whitespace
        }

        if (!ProcText.NextToken(ref rest, out var valueToken) || !TryParseValue(valueToken, out value)) return false;
        if (ProcText.NextToken(ref rest, out var timestamp)
            && !long.TryParse(timestamp, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
        {
            return false;
        }
        return rest.Trim().IsEmpty;
    }

    private static bool TryParseLabels(ref ReadOnlySpan<char> rest, List<KeyValuePair<string, string>> labels)
    {
        rest = rest[1..]; // '{'
        var value = new StringBuilder();
        while (true)
        {
            rest = rest.TrimStart();
            if (rest.IsEmpty) return false;
            if (rest[0] == '}')
            {
                rest = rest[1..];
                return true;
            }

            var length = 0;
            while (length < rest.Length && IsNameChar(rest[length], length == 0, colonAllowed: false)) length++;
            if (length == 0) return false;
            var labelName = rest[..length].ToString();
            rest = rest[length..].TrimStart();
            if (rest.IsEmpty || rest[0] != '=') return false;
            rest = rest[1..].TrimStart();
            if (rest.IsEmpty || rest[0] != '"') return false;
            rest = rest[1..];

            value.Clear();
            var closed = false;
            while (!rest.IsEmpty)
            {
                var c = rest[0];
                rest = rest[1..];
                if (c == '"')
                {
                    closed = true;
                    break;
                }
                if (c != '\\' || rest.IsEmpty)
                {
                    value.Append(c);
                    continue;
                }
                var escaped = rest[0];
                rest = rest[1..];
                switch (escaped)
                {
                    case 'n': value.Append('\n'); break;
                    case '\\': value.Append('\\'); break;
                    case '"': value.Append('"'); break;
                    default: value.Append('\\').Append(escaped); break; // as Prometheus does: kept as written
                }
            }
            if (!closed) return false;
            foreach (var existing in labels)
            {
                if (existing.Key == labelName) return false;
            }
            labels.Add(new(labelName, value.ToString()));

            rest = rest.TrimStart();
            if (rest.IsEmpty) return false;
            if (rest[0] == ',') rest = rest[1..];
            else if (rest[0] != '}') return false;
        }
    }

    private static bool TryParseValue(ReadOnlySpan<char> token, out double value)
    {
        switch (token)
        {
            case "NaN": value = double.NaN; return true;
            case "+Inf" or "Inf": value = double.PositiveInfinity; return true;
            case "-Inf": value = double.NegativeInfinity; return true;
            default:
                return double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out value) && double.IsFinite(value);
        }
    }

    private static bool IsNameChar(char c, bool first, bool colonAllowed) =>
        c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_'
        || (colonAllowed && c == ':')
        || (!first && c is >= '0' and <= '9');
}
