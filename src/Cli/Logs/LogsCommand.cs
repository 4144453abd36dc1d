using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Cli.Logs;

/// <summary>
/// <c>fleetctl logs</c>: search the fleet's logs (newest <c>--tail</c> entries, printed oldest first) and, with
/// <c>--follow</c>, keep printing matching entries as they are stored until Ctrl+C.
/// </summary>
internal static class LogsCommand
{
    private const int DefaultTail = 100;
    private const int DefaultFollowTail = 10;
    private const int MaxPage = 5000;
    private static readonly TimeSpan DefaultSince = TimeSpan.FromHours(24);
    private static readonly string[] Severities = ["error", "warn", "info", "debug"];

    public static Command Build(CliContext context)
    {
        var host = new Option<string>("--host") { Description = "Only this host: an agent ID or a hostname", HelpName = "host" };
        var source = new Option<string>("--source") { Description = "Only this source: its name in the agent config, or a path suffix such as error.log", HelpName = "source" };
        var severity = new Option<string>("--severity") { Description = "At least this severity: error, warn, info or debug", HelpName = "level" };
        severity.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && !Severities.Contains(result.Tokens[^1].Value.Trim().ToLowerInvariant()))
                result.AddError($"invalid --severity value '{result.Tokens[^1].Value}': expected error, warn, info or debug");
        });
        var q = new Option<string>("--q") { Description = "Words or a \"quoted phrase\" the message contains, e.g. --q '\"Failed password\"'", HelpName = "text" };
        var since = new Option<TimeSpan?>("--since")
        {
            Description = $"How far back from now, e.g. 15m, 6h, 7d [default: {DurationText.Format(DefaultSince)}]",
            HelpName = "duration",
            CustomParser = result => ParseAge(result, "--since"),
        };
        var until = new Option<Until?>("--until")
        {
            Description = "Only entries before this: a time (ISO 8601, UTC unless it carries an offset) or a duration ago such as 1h [default: now]",
            HelpName = "time",
            CustomParser = ParseUntil,
        };
        var tail = new Option<int?>("--tail", "-n")
        {
            Description = $"Show the newest N entries, oldest first [default: {DefaultTail}; {DefaultFollowTail} with --follow]",
            HelpName = "N",
            CustomParser = ParseTail,
        };
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing matching entries as they are stored, until Ctrl+C" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per entry (JSON Lines, the REST API's field names)" };
        var command = new Command("logs", "Search the fleet's logs: TIME HOST SOURCE SEVERITY MESSAGE, oldest first")
        {
            host, source, severity, q, since, until, tail, follow, json,
        };
        command.Validators.Add(result =>
        {
            if (result.GetResult(follow) is not null && result.GetResult(until) is not null) result.AddError("--follow and --until cannot be used together");
        });

        command.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Protocol.V1.Logs.LogsClient(session.CallInvoker);
            var filter = (Host: parse.GetValue(host)?.Trim() ?? "", Source: parse.GetValue(source)?.Trim() ?? "",
                Severity: parse.GetValue(severity)?.Trim().ToLowerInvariant() ?? "", Q: parse.GetValue(q) ?? "");
            var asJson = parse.GetValue(json);
            var following = parse.GetValue(follow);
            var count = parse.GetValue(tail) ?? (following ? DefaultFollowTail : DefaultTail);
            var now = session.Time.GetUtcNow();
            var window = parse.GetValue(since) ?? DefaultSince;
            var request = new SearchLogsRequest
            {
                Host = filter.Host, Source = filter.Source, Severity = filter.Severity, Q = filter.Q,
                // A --since reaching before 1970 means "everything".
                From = Timestamp.FromDateTimeOffset(window >= now - DateTimeOffset.UnixEpoch ? DateTimeOffset.UnixEpoch : now - window),
                To = Timestamp.FromDateTimeOffset(parse.GetValue(until) is { } end ? end.At ?? now - end.Ago : now),
            };

            if (!following)
            {
                var entries = await TailAsync(client, request, count, ct);
                if (entries.Count == 0 && !asJson) await context.Environment.Error.WriteLineAsync("No matching log entries.");
                foreach (var entry in entries) await WriteAsync(session.Out, entry, asJson, ct);
                return ExitCodes.Ok;
            }

            // Follow first, then search: nothing stored in between is missed, and what both return is printed once.
            using var call = client.FollowLogs(new FollowLogsRequest { Host = filter.Host, Source = filter.Source, Severity = filter.Severity, Q = filter.Q }, cancellationToken: ct);
            try
            {
                await call.ResponseHeadersAsync;
                var shown = new HashSet<long>();
                foreach (var entry in await TailAsync(client, request, count, ct))
                {
                    shown.Add(entry.Id);
                    await WriteAsync(session.Out, entry, asJson, ct);
                }
                await session.Out.FlushAsync(ct);
                while (await call.ResponseStream.MoveNext(ct))
                {
                    if (shown.Contains(call.ResponseStream.Current.Id)) continue;
                    await WriteAsync(session.Out, call.ResponseStream.Current, asJson, ct);
                    await session.Out.FlushAsync(ct);
                }
                await context.Environment.Error.WriteLineAsync("fleetctl: the coordinator ended the follow");
                return ExitCodes.Failure;
            }
            catch (Exception ex) when (ct.IsCancellationRequested && ex is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
            {
                // Ctrl+C is how a follow ends, not a failure.
                return ExitCodes.Ok;
            }
        }, ct));
        return command;
    }

    /// <summary>The newest <paramref name="count"/> matching entries (paging past the coordinator's 5000), oldest first.</summary>
    private static async Task<List<LogRecord>> TailAsync(Protocol.V1.Logs.LogsClient client, SearchLogsRequest request, int count, CancellationToken ct)
    {
        var entries = new List<LogRecord>();
        while (entries.Count < count)
        {
            request.Limit = Math.Min(count - entries.Count, MaxPage);
            var response = await client.SearchLogsAsync(request, cancellationToken: ct);
            entries.AddRange(response.Entries);
            if (response.NextPageToken.Length == 0) break;
            request.PageToken = response.NextPageToken;
        }
        entries.Reverse();
        return entries;
    }

    private static async Task WriteAsync(TextWriter output, LogRecord entry, bool asJson, CancellationToken ct)
    {
        if (asJson)
        {
            await JsonLines.WriteAsync(output, entry, ct);
            return;
        }
        await output.WriteLineAsync(Line(entry).AsMemory(), ct);
    }

    /// <summary>"2025-03-14T15:09:26.123Z web-02 app-errors ERROR message"; control characters (but newline and tab) shown as '?'.</summary>
    internal static string Line(LogRecord entry)
    {
        var time = entry.Time is null ? "-" : entry.Time.ToDateTimeOffset().ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        var hostName = entry.Hostname.Length > 0 ? entry.Hostname : entry.AgentId;
        var sourceName = entry.Source.Length > 0 ? entry.Source : entry.Path.Length > 0 ? entry.Path : "-";
        var level = entry.Severity.Length > 0 ? entry.Severity.ToUpperInvariant() : "-";
        var message = new StringBuilder(entry.Message.Length);
        foreach (var c in entry.Message.TrimEnd('\n', '\r')) message.Append(char.IsControl(c) && c is not '\n' and not '\t' ? '?' : c);
        return $"{time} {Clean(hostName)} {Clean(sourceName)} {level} {message}";
    }

    private static string Clean(string text) => new([.. text.Select(c => char.IsControl(c) || char.IsWhiteSpace(c) ? '?' : c)]);

    private static TimeSpan? ParseAge(ArgumentResult result, string option)
    {
        var raw = result.Tokens[^1].Value;
        if (DurationText.TryParseAge(raw, out var value)) return value;
        result.AddError($"invalid {option} value '{raw}': expected a positive duration such as 90m, 24h or 30d");
        return null;
    }

    /// <summary>--until: a time, or a duration before now (resolved with the session's clock).</summary>
    private sealed record Until(DateTimeOffset? At, TimeSpan Ago);

    private static Until? ParseUntil(ArgumentResult result)
    {
        var raw = result.Tokens[^1].Value.Trim();
        if (DurationText.TryParseAge(raw, out var ago)) return new Until(null, ago);
        if (raw.Length >= 10 && char.IsAsciiDigit(raw[0])
            && DateTimeOffset.TryParse(raw, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var time))
            return new Until(time, TimeSpan.Zero);
        result.AddError($"invalid --until value '{raw}': expected a time such as 2025-03-14T15:00:00Z or a duration ago such as 1h");
        return null;
    }

    private static int? ParseTail(ArgumentResult result)
    {
        var raw = result.Tokens[^1].Value;
        if (int.TryParse(raw.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 and <= 1_000_000) return n;
        result.AddError($"invalid --tail value '{raw}': expected a whole number from 1 to 1000000");
        return null;
    }
}
