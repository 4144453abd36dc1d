using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Cli.Audit;

/// <summary><c>fleetctl audit list|verify|export</c>: the coordinator's hash-chained audit trail.</summary>
internal static partial class AuditCommands
{
    /// <summary>Exit code of <c>audit verify</c> when the chain is broken, so scripts can tell "tampered" from "unreachable" (1).</summary>
    public const int ChainBroken = 3;

    /// <summary>How often <c>audit export --output</c> reports progress on stderr.</summary>
    public const int ProgressEvery = 10_000;

    private const int DefaultLimit = 50;

    /// <summary>The server's largest page.</summary>
    private const int MaxPageSize = 1000;

    private static readonly string[] CsvHeader =
        ["seq", "id", "time", "actor_kind", "actor", "remote_address", "action", "target", "host", "outcome", "parameters_json", "hash"];

    private static readonly UTF8Encoding Utf8NoBom = new(encoderShouldEmitUTF8Identifier: false);

    public static Command Build(CliContext context)
    {
        var audit = new Command("audit", "List, verify and export the coordinator's audit trail");
        audit.Add(BuildList(context));
        audit.Add(BuildVerify(context));
        audit.Add(BuildExport(context));
        return audit;
    }

    private static Command BuildList(CliContext context)
    {
        var filters = new Filters();
        var limit = Paging.LimitOption(DefaultLimit, "events");
        var json = new Option<bool>("--json") { Description = "Print JSON Lines (one event per line, the REST API's field names) instead of a table" };
        var list = new Command("list", "List audit events, newest first");
        list.Aliases.Add("ls");
        filters.AddTo(list);
        list.Add(limit);
        list.Add(json);
        list.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var request = filters.ToRequest(parse, session.Time.GetUtcNow());
            request.NewestFirst = true;
            var client = new Fleet.Protocol.V1.Audit.AuditClient(session.CallInvoker);
            var events = await ListAsync(client, request, parse.GetValue(limit), ct);

            if (parse.GetValue(json))
            {
                foreach (var auditEvent in events) await JsonLines.WriteAsync(session.Out, auditEvent, ct);
                return ExitCodes.Ok;
            }

            if (events.Count == 0)
            {
                await context.Environment.Error.WriteLineAsync("No audit events.");
                return ExitCodes.Ok;
            }

            var table = new TextTable("TIME", "SEQ", "ACTOR", "ACTION", "TARGET", "OUTCOME");
            foreach (var e in events)
            {
                table.AddRow(e.Time is null ? "" : e.Time.ToDateTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
                    e.Seq == 0 ? "-" : e.Seq.ToString(CultureInfo.InvariantCulture), e.Actor, e.Action, e.Target, e.Outcome);
            }
            table.WriteTo(session.Out);
            return ExitCodes.Ok;
        }, ct));
        return list;
    }

    private static Task<List<AuditEvent>> ListAsync(Fleet.Protocol.V1.Audit.AuditClient client, ListAuditEventsRequest request, int limit, CancellationToken ct) =>
        Paging.TakeAsync(async (size, token) =>
        {
            request.PageSize = size;
            request.PageToken = token;
            var page = await client.ListAuditEventsAsync(request, cancellationToken: ct);
            return (page.Events.AsEnumerable(), page.NextPageToken);
        }, limit, MaxPageSize);

    private static Command BuildVerify(CliContext context)
    {
        var json = new Option<bool>("--json") { Description = "Print the verification result as JSON (same exit codes)" };
        var verify = new Command("verify",
            $"Recompute the hash chain and check it against the signed anchors; exits {ChainBroken} when the chain is broken. "
            + "A long chain may need a larger --timeout") { json };
        verify.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Fleet.Protocol.V1.Audit.AuditClient(session.CallInvoker);
            var response = await client.VerifyAuditAsync(new VerifyAuditRequest(), cancellationToken: ct);
            if (parse.GetValue(json))
            {
                ProtoJson.Write(session.Out, response);
            }
            else
            {
                await session.Out.WriteLineAsync(Summary(response));
            }
            return response.Ok ? ExitCodes.Ok : ChainBroken;
        }, ct));
        return verify;
    }

    /// <summary>"audit chain OK: 12,345 rows (seq 1..12345), 7 anchors, last anchored seq 12000, 3 rows not yet sealed" or "audit chain BROKEN at seq N: problem".</summary>
    internal static string Summary(VerifyAuditResponse response)
    {
        if (!response.Ok)
        {
            var where = response.FirstBrokenSeq > 0 ? $" at seq {response.FirstBrokenSeq.ToString(CultureInfo.InvariantCulture)}" : "";
            var problem = response.Problem.ReplaceLineEndings(" ").Trim();
            return $"audit chain BROKEN{where}" + (problem.Length > 0 ? $": {problem}" : "");
        }

        var summary = new StringBuilder("audit chain OK: ").Append(Count(response.RowsChecked, "row"));
        if (response.RowsChecked > 0)
        {
            summary.Append(CultureInfo.InvariantCulture, $" (seq {response.FirstSeq}..{response.LastSeq})");
        }
        summary.Append(", ").Append(Count(response.AnchorsChecked, "anchor"));
        if (response.LastAnchoredSeq > 0)
        {
            summary.Append(CultureInfo.InvariantCulture, $", last anchored seq {response.LastAnchoredSeq}");
        }
        summary.Append(", ").Append(Count(response.UnsealedRows, "row")).Append(" not yet sealed");
        return summary.ToString();
    }

    private static string Count(long n, string noun) =>
        $"{n.ToString("N0", CultureInfo.InvariantCulture)} {noun}{(n == 1 ? "" : "s")}";

    private enum ExportFormat
    {
        Jsonl,
        Csv,
    }

    private static Command BuildExport(CliContext context)
    {
        var filters = new Filters();
        // No DefaultValueFactory: help would print the enum as "Jsonl". Absent means jsonl.
        var format = new Option<ExportFormat?>("--format")
        {
            Description = "jsonl (one event per line, the REST API's field names) or csv (RFC 4180, with a header row) [default: jsonl]",
            HelpName = "jsonl|csv",
            CustomParser = ParseFormat,
        };
        var output = new Option<string>("--output", "-o")
        {
            Description = "Write to this file (replaced only once the export is complete) instead of stdout",
            HelpName = "file",
        };
        output.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && string.IsNullOrWhiteSpace(result.Tokens[^1].Value)) result.AddError("invalid --output value '': expected a file name");
        });
        var export = new Command("export", "Export every matching audit event, oldest first; needs --since or --from");
        filters.AddTo(export);
        export.Add(format);
        export.Add(output);
        export.Validators.Add(result =>
        {
            if (result.GetResult(filters.Since) is null && result.GetResult(filters.From) is null)
            {
                result.AddError("audit export needs --since or --from, e.g. --since 30d");
            }
        });
        export.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var request = filters.ToRequest(parse, session.Time.GetUtcNow());
            request.NewestFirst = false;
            var client = new Fleet.Protocol.V1.Audit.AuditClient(session.CallInvoker);
            var chosen = parse.GetValue(format) ?? ExportFormat.Jsonl;
            if (parse.GetValue(output) is not { } file)
            {
                await ExportAsync(client, request, chosen, session.Out, progress: null, ct);
                return ExitCodes.Ok;
            }
            return await ExportToFileAsync(client, request, chosen, file, context.Environment.Error, ct);
        }, ct));
        return export;
    }

    /// <summary>
    /// Writes to a temporary file next to the target and renames it over the target once the stream has ended,
    /// so the target is never half-written: it is either the old file (or absent) or the complete export.
    /// </summary>
    private static async Task<int> ExportToFileAsync(Fleet.Protocol.V1.Audit.AuditClient client, ListAuditEventsRequest request, ExportFormat format,
        string file, TextWriter error, CancellationToken ct)
    {
        var target = Path.GetFullPath(file);
        var temporary = Path.Combine(Path.GetDirectoryName(target) ?? ".", $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.partial");
        var renamed = false;
        try
        {
            long count;
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Options = FileOptions.Asynchronous, BufferSize = 1 << 16 };
            await using (var stream = new FileStream(temporary, options))
            {
                await using var writer = new StreamWriter(stream, Utf8NoBom);
                count = await ExportAsync(client, request, format, writer,
                    exported => error.WriteLineAsync($"exported {exported.ToString(CultureInfo.InvariantCulture)} rows…"), ct);
                await writer.FlushAsync(ct);
                stream.Flush(flushToDisk: true);
            }
            ct.ThrowIfCancellationRequested();
            File.Move(temporary, target, overwrite: true);
            renamed = true;
            await error.WriteLineAsync($"exported {count.ToString(CultureInfo.InvariantCulture)} {(count == 1 ? "row" : "rows")} to {file}");
            return ExitCodes.Ok;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            await error.WriteLineAsync($"fleetctl: cannot write {file}: {ex.Message.ReplaceLineEndings(" ")}");
            return ExitCodes.Failure;
        }
        finally
        {
            if (!renamed && File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>
    /// Streams the export into <paramref name="writer"/>. No deadline: the call interceptor applies --timeout to
    /// unary calls only, and an export runs as long as it has rows to send.
    /// </summary>
    private static async Task<long> ExportAsync(Fleet.Protocol.V1.Audit.AuditClient client, ListAuditEventsRequest request, ExportFormat format,
        TextWriter writer, Func<long, Task>? progress, CancellationToken ct)
    {
        using var call = client.ExportAuditEvents(request, cancellationToken: ct);
        long count = 0;
        // The CSV header goes out with the first event (or after an empty stream), so a call that fails
        // before answering leaves stdout empty.
        var headerWritten = format != ExportFormat.Csv;
        await foreach (var auditEvent in call.ResponseStream.ReadAllAsync(ct))
        {
            // Ctrl+C stops the export even while rows keep arriving.
            ct.ThrowIfCancellationRequested();
            if (!headerWritten)
            {
                await Csv.WriteRecordAsync(writer, CsvHeader, ct);
                headerWritten = true;
            }
            if (format == ExportFormat.Csv)
            {
                await Csv.WriteRecordAsync(writer, CsvFields(auditEvent), ct);
            }
            else
            {
                await JsonLines.WriteAsync(writer, auditEvent, ct);
            }
            count++;
            if (progress is not null && count % ProgressEvery == 0) await progress(count);
        }
        if (!headerWritten) await Csv.WriteRecordAsync(writer, CsvHeader, ct);
        await writer.FlushAsync(ct);
        return count;
    }

    private static string[] CsvFields(AuditEvent e) =>
    [
        e.Seq.ToString(CultureInfo.InvariantCulture),
        e.Id.ToString(CultureInfo.InvariantCulture),
        Rfc3339(e.Time),
        e.ActorKind,
        e.Actor,
        e.RemoteAddress,
        e.Action,
        e.Target,
        e.Host,
        e.Outcome,
        e.ParametersJson,
        e.Hash,
    ];

    /// <summary>UTC with the fraction protobuf's JSON mapping uses (none, 3, 6 or 9 digits), so CSV and JSON Lines agree.</summary>
    internal static string Rfc3339(Timestamp? time)
    {
        if (time is null) return "";
        var seconds = DateTime.UnixEpoch.AddSeconds(time.Seconds).ToString("yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture);
        var nanos = time.Nanos;
        var fraction = nanos == 0 ? ""
            : nanos % 1_000_000 == 0 ? $".{nanos / 1_000_000:000}"
            : nanos % 1_000 == 0 ? $".{nanos / 1_000:000000}"
            : $".{nanos:000000000}";
        return $"{seconds}{fraction}Z";
    }

    /// <summary>The filters <c>list</c> and <c>export</c> share, and how they become a request.</summary>
    private sealed class Filters
    {
        public Option<string> Actor { get; } = new("--actor") { Description = "Only events by this actor", HelpName = "name" };

        public Option<string> Action { get; } = new("--action") { Description = "Only this action, or a prefix ending in '*' (agent.*)", HelpName = "action" };

        public Option<string> Host { get; } = new("--host") { Description = "Only events concerning this agent", HelpName = "agent-id" };

        public Option<TimeSpan?> Since { get; } = new("--since")
        {
            Description = "Only events from this long ago until now, e.g. 90m, 24h, 30d",
            HelpName = "duration",
            CustomParser = ParseSince,
        };

        public Option<DateTimeOffset?> From { get; } = new("--from")
        {
            Description = "Only events at or after this time (ISO 8601, UTC unless it carries an offset)",
            HelpName = "time",
            CustomParser = result => ParseTime(result, "--from"),
        };

        public Option<DateTimeOffset?> To { get; } = new("--to")
        {
            Description = "Only events before this time (ISO 8601, UTC unless it carries an offset)",
            HelpName = "time",
            CustomParser = result => ParseTime(result, "--to"),
        };

        public Option<string> Query { get; } = new("--q") { Description = "Only events whose target, parameters or outcome contain this text", HelpName = "text" };

        public void AddTo(Command command)
        {
            command.Add(Actor);
            command.Add(Action);
            command.Add(Host);
            command.Add(Since);
            command.Add(From);
            command.Add(To);
            command.Add(Query);
            command.Validators.Add(Validate);
        }

        private void Validate(CommandResult result)
        {
            if (result.GetResult(Since) is not null && result.GetResult(From) is not null)
            {
                result.AddError("--since and --from cannot be used together");
            }
            // GetValue would throw for a value that failed to parse (already reported), so read the tokens.
            if (TimeIn(result, From) is { } from && TimeIn(result, To) is { } to && to <= from)
            {
                result.AddError($"--to {Rfc3339(Timestamp.FromDateTimeOffset(to))} must be later than --from {Rfc3339(Timestamp.FromDateTimeOffset(from))}");
            }
        }

        private static DateTimeOffset? TimeIn(CommandResult result, Option<DateTimeOffset?> option) =>
            result.GetResult(option) is { Tokens.Count: > 0 } given && TryParseTime(given.Tokens[^1].Value, out var time) ? time : null;

        public ListAuditEventsRequest ToRequest(ParseResult parse, DateTimeOffset now)
        {
            var request = new ListAuditEventsRequest
            {
                Actor = parse.GetValue(Actor) ?? "",
                Action = parse.GetValue(Action) ?? "",
                Host = parse.GetValue(Host) ?? "",
                Q = parse.GetValue(Query) ?? "",
            };
            if (parse.GetValue(Since) is { } since)
            {
                // A --since reaching before 1970 means "everything"; audit events cannot be older.
                var from = since >= now - DateTimeOffset.UnixEpoch ? DateTimeOffset.UnixEpoch : now - since;
                request.From = Timestamp.FromDateTimeOffset(from);
            }
            else if (parse.GetValue(From) is { } from)
            {
                request.From = Timestamp.FromDateTimeOffset(from);
            }
            if (parse.GetValue(To) is { } to) request.To = Timestamp.FromDateTimeOffset(to);
            return request;
        }
    }

    private static TimeSpan? ParseSince(ArgumentResult result)
    {
        var raw = result.Tokens[^1].Value;
        if (DurationText.TryParseAge(raw, out var value)) return value;
        result.AddError($"invalid --since value '{raw}': expected a positive duration such as 90m, 24h or 30d");
        return null;
    }


    // A date, optionally with a time (minutes, seconds, fraction) and a zone: 2025-03-14, 2025-03-14T15:00, 2025-03-14T15:00:00.5+01:00.
    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?)?$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex IsoTime();

    private static DateTimeOffset? ParseTime(ArgumentResult result, string option)
    {
        var raw = result.Tokens[^1].Value;
        if (TryParseTime(raw, out var time)) return time;
        result.AddError($"invalid {option} value '{raw}': expected an ISO 8601 time such as 2025-03-14 or 2025-03-14T15:00:00Z");
        return null;
    }

    private static bool TryParseTime(string raw, out DateTimeOffset time)
    {
        time = default;
        var text = raw.Trim();
        return IsoTime().IsMatch(text)
            && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out time);
    }

    private static ExportFormat? ParseFormat(ArgumentResult result)
    {
        var raw = result.Tokens[^1].Value;
        switch (raw.Trim().ToLowerInvariant())
        {
            case "jsonl": return ExportFormat.Jsonl;
            case "csv": return ExportFormat.Csv;
            default:
                result.AddError($"invalid --format value '{raw}': expected jsonl or csv");
                return ExportFormat.Jsonl;
        }
    }
}
