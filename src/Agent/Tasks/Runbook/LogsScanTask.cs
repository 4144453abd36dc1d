using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Fleet.Protocol.V1;
using ParamType = Fleet.Protocol.V1.ParameterSchema.Types.Type;

namespace Fleet.Agent.Tasks.Runbook;

/// <summary>
/// logs.scan: the last <c>lines</c> lines of a log file the policy allows, and the lines matching <c>pattern</c>
/// (a regular expression, default ERROR) in the file's last <see cref="MaxScanBytes"/>. With <c>since</c>, lines with
/// a recognisable leading timestamp (ISO 8601 or syslog "Nov 28 10:00:00") older than that are not counted as matches.
/// </summary>
public sealed class LogsScanTask : IAgentTask
{
    public const long MaxScanBytes = 64L * 1024 * 1024;
    const int MaxMatchesShown = 200;

    /// <summary>Bytes of matched lines in result_json (each line clipped to <see cref="ResultLimits.MaxLineBytes"/>);
    /// the newest lines are kept, so the result stays under <see cref="ResultLimits.MaxResultJsonBytes"/>.</summary>
    const int MaxMatchBytesInResult = 192 * 1024;

    public TaskDescriptor Descriptor { get; } = TaskSchema.Describe(
        "logs.scan", "Show the last lines of a log file and the lines matching a pattern, with counts.", false,
        TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(10),
        TaskSchema.Parameter("path", ParamType.Path, "The log file (must be allowed by the local policy).", required: true),
        TaskSchema.Parameter("lines", ParamType.Int, "How many of the last lines to show.", defaultValue: "100", pattern: @"\A[0-9]{1,5}\z"),
        TaskSchema.Parameter("pattern", ParamType.String, "Regular expression of the lines to count and show.", defaultValue: "ERROR"),
        TaskSchema.Parameter("since", ParamType.Duration, "Only count matches with a timestamp within this long (e.g. 1h)."));

    public async Task<TaskOutcome> ExecuteAsync(TaskContext context, CancellationToken cancellationToken)
    {
        var path = context.Policy.CheckPath(context.Parameters.String("path")!);
        var lines = context.Parameters.Int("lines") ?? 100;
        var patternText = context.Parameters.String("pattern") ?? "ERROR";
        Regex pattern;
        try { pattern = new Regex(patternText, RegexOptions.CultureInvariant | RegexOptions.NonBacktracking); }
        catch (ArgumentException ex) { throw new TaskParameterException("pattern", $"'{patternText}' is not a valid regular expression: {ex.Message}"); }
        var since = context.Parameters.Duration("since");
        if (context.DryRun)
        {
            await context.Output.WriteLineAsync($"would read the last {lines} lines of {path} and the lines matching /{patternText}/{(since is { } s ? $" from the last {Fleet.Protocol.Durations.Format(s)}" : "")}", cancellationToken);
            return TaskOutcome.Succeeded($"dry run: would scan {path}");
        }
        if (!File.Exists(path)) return TaskOutcome.Failed($"{path}: no such file");

        var cutoff = since is { } window ? context.Time.GetLocalNow().DateTime - window : (DateTime?)null;
        var tail = new Queue<string>(Math.Max(lines, 1));
        var matches = new Queue<string>();
        long scanned = 0, matched = 0;
        await using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 64 * 1024, FileOptions.Asynchronous | FileOptions.SequentialScan))
        {
            var skipFirst = stream.Length > MaxScanBytes;
            if (skipFirst) stream.Seek(-MaxScanBytes, SeekOrigin.End);
            using var reader = new StreamReader(stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: false);
            if (skipFirst) await reader.ReadLineAsync(cancellationToken); // a partial line
            while (await reader.ReadLineAsync(cancellationToken) is { } line)
            {
                scanned++;
                if (lines > 0)
                {
                    if (tail.Count == lines) tail.Dequeue();
                    tail.Enqueue(line);
                }
                if (!pattern.IsMatch(line)) continue;
                if (cutoff is { } c && LeadingTimestamp(line) is { } at && at < c) continue;
                matched++;
                if (matches.Count == MaxMatchesShown) matches.Dequeue();
                matches.Enqueue(ResultLimits.Clip(line, ResultLimits.MaxLineBytes));
            }
        }

        await context.Output.WriteLineAsync($"==> last {tail.Count} lines of {path} <==", cancellationToken);
        foreach (var line in tail) await context.Output.WriteLineAsync(line, cancellationToken);
        await context.Output.WriteLineAsync($"==> {matched} lines matching /{patternText}/{(matched > matches.Count ? $" (last {matches.Count} shown)" : "")} <==", cancellationToken);
        foreach (var line in matches) await context.Output.WriteLineAsync(line, cancellationToken);
        var figures = new Dictionary<string, double> { ["lines.scanned"] = scanned, ["lines.matched"] = matched, ["lines.shown"] = tail.Count };
        var json = ResultJson.Build(w =>
        {
            w.WriteStartObject();
            w.WriteString("path", path);
            w.WriteString("pattern", patternText);
            w.WriteNumber("scanned", scanned);
            w.WriteNumber("matched", matched);
            var inResult = NewestWithin(matches, MaxMatchBytesInResult);
            w.WriteNumber("matchesInResult", inResult.Count);
            w.WriteStartArray("matches");
            foreach (var m in inResult) w.WriteStringValue(m);
            w.WriteEndArray();
            w.WriteEndObject();
        });
        return TaskOutcome.Succeeded($"{matched} lines matching /{patternText}/ in {path}", figures, json);
    }

    /// <summary>The newest lines whose UTF-8 size adds up to at most <paramref name="maxBytes"/>, oldest first.</summary>
    static List<string> NewestWithin(IEnumerable<string> lines, int maxBytes)
    {
        var kept = new List<string>();
        var total = 0;
        foreach (var line in lines.Reverse())
        {
            total += Encoding.UTF8.GetByteCount(line);
            if (total > maxBytes) break;
            kept.Add(line);
        }
        kept.Reverse();
        return kept;
    }

    static readonly string[] SyslogFormats = ["MMM d HH:mm:ss", "MMM  d HH:mm:ss", "MMM dd HH:mm:ss"];

    /// <summary>The line's leading timestamp (local time), when it has one.</summary>
    internal static DateTime? LeadingTimestamp(string line)
    {
        var space = line.IndexOf(' ', StringComparison.Ordinal);
        if (space > 0 && DateTimeOffset.TryParse(line.AsSpan(0, space), CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal, out var iso) && line[0] is >= '0' and <= '9')
            return iso.LocalDateTime;
        if (line.Length >= 15 && DateTime.TryParseExact(line[..15], SyslogFormats, CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal, out var syslog))
            return syslog;
        return null;
    }
}
