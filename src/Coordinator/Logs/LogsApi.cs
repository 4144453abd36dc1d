using System.Buffers.Text;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Logs;

/// <summary>Section "Fleet:Logs".</summary>
public sealed class LogsOptions : IValidatableObject
{
    public const string Section = "Fleet:Logs";

    /// <summary>Entries older than this are deleted (with <see cref="Archive"/>: whole UTC days, archived first).</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(30);

    /// <summary>Write each expiring day to the blob store (logs/YYYY/MM/DD/part-N.jsonl.gz) before deleting it.</summary>
    public bool Archive { get; set; }

    /// <summary>How often retention runs.</summary>
    public TimeSpan RetentionInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// PostgreSQL: how often the search index's pending list is merged in the background (<see cref="LogsIndexMerger"/>),
    /// so the ingest's transactions do not merge it themselves. Zero turns the background merge off.
    /// </summary>
    public TimeSpan IndexMergeInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// PostgreSQL: a search with words first asks the text index for at most this many matches; when there are no
    /// more, the page is taken from them (a request id or an IP: milliseconds). More matches than this means common
    /// words, and the search walks the time index instead (<see cref="LogsApi"/>).
    /// </summary>
    public int SearchCandidates { get; set; } = 2_000;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Retention < TimeSpan.FromDays(1))
            yield return new($"{Section}:Retention: '{Retention}' must be at least one day.", [nameof(Retention)]);
        if (RetentionInterval < TimeSpan.FromMinutes(1) || RetentionInterval > TimeSpan.FromDays(1))
            yield return new($"{Section}:RetentionInterval: '{RetentionInterval}' must be between 1 minute and 1 day.", [nameof(RetentionInterval)]);
        if (IndexMergeInterval < TimeSpan.Zero || IndexMergeInterval > TimeSpan.FromHours(1))
            yield return new($"{Section}:IndexMergeInterval: '{IndexMergeInterval}' must be between 0 (off) and 1 hour.", [nameof(IndexMergeInterval)]);
        if (SearchCandidates < 1 || SearchCandidates > 100_000)
            yield return new($"{Section}:SearchCandidates: '{SearchCandidates}' must be between 1 and 100000.", [nameof(SearchCandidates)]);
    }
}

/// <summary>The filters SearchLogs and FollowLogs share, checked once (InvalidArgument naming the field).</summary>
sealed partial class LogFilter
{
    public const int MaxQuery = 1000;

    public string Host { get; private init; } = "";
    public string Source { get; private init; } = "";
    public short MinSeverity { get; private init; }
    public string Query { get; private init; } = "";
    /// <summary>The query's words and "quoted phrases"; a leading '-' excludes.</summary>
    public IReadOnlyList<(string Text, bool Exclude)> Terms { get; private init; } = [];

    public static LogFilter Parse(string host, string source, string severity, string q)
    {
        if (host.Length > 256) throw ApiArguments.Invalid($"host: {host.Length} characters; at most 256");
        if (source.Length > LogEntryRecord.MaxPath) throw ApiArguments.Invalid($"source: {source.Length} characters; at most {LogEntryRecord.MaxPath}");
        short level = 0;
        if (severity.Length > 0 && !LogSeverity.TryParse(severity, out level))
            throw ApiArguments.Invalid($"severity: '{severity}' is not one of {LogSeverity.Names}");
        if (q.Length > MaxQuery) throw ApiArguments.Invalid($"q: {q.Length} characters; at most {MaxQuery}");
        var terms = TermPattern().Matches(q)
            .Select(m => (Text: m.Groups["phrase"].Success ? m.Groups["phrase"].Value : m.Groups["word"].Value, Exclude: m.Groups["not"].Success))
            .Where(t => t.Text.Trim().Length > 0)
            .ToList();
        return new LogFilter { Host = host.Trim(), Source = source.Trim(), MinSeverity = level, Query = q.Trim(), Terms = terms };
    }

    [GeneratedRegex("""(?<not>-)?(?:"(?<phrase>[^"]*)"?|(?<word>[^\s"]+))""")]
    private static partial Regex TermPattern();

    /// <summary>For followers, in memory: the same rules as the search (words match case-insensitively anywhere).</summary>
    public bool Matches(LogRecord r)
    {
        if (Host.Length > 0 && r.AgentId != Host && !string.Equals(r.Hostname, Host, StringComparison.OrdinalIgnoreCase)) return false;
        if (Source.Length > 0 && r.Source != Source && r.Path != Source && !r.Path.EndsWith("/" + Source, StringComparison.Ordinal)) return false;
        if (MinSeverity > 0 && !(LogSeverity.TryParse(r.Severity, out var level) && level >= MinSeverity)) return false;
        foreach (var (text, exclude) in Terms)
            if (r.Message.Contains(text, StringComparison.OrdinalIgnoreCase) == exclude) return false;
        return true;
    }

    /// <summary>Applies the filter in SQL. Host is resolved to agent ids first (an id, or every agent with that hostname).</summary>
    public async Task<IQueryable<LogEntryRecord>> ApplyAsync(FleetDbContext db, IQueryable<LogEntryRecord> entries, CancellationToken cancellationToken)
    {
        if (Host.Length > 0)
        {
            var agents = await db.Agents.AsNoTracking().Select(a => new { a.Id, a.Hostname }).ToListAsync(cancellationToken);
            var ids = agents.Where(a => a.Id == Host || string.Equals(a.Hostname, Host, StringComparison.OrdinalIgnoreCase)).Select(a => a.Id).ToList();
            if (!ids.Contains(Host)) ids.Add(Host); // an agent since removed from the registry keeps its logs
            entries = entries.Where(e => ids.Contains(e.AgentId));
        }
        if (Source.Length > 0)
        {
            var suffix = "/" + Source;
            entries = entries.Where(e => e.Source == Source || e.Path == Source || e.Path.EndsWith(suffix));
        }
        if (MinSeverity > 0)
        {
            var min = MinSeverity;
            entries = entries.Where(e => e.Severity >= min);
        }
        if (Query.Length > 0)
        {
            if (db.Database.IsNpgsql())
            {
                // Served by the GIN index on to_tsvector('simple', "Message") (PostgresFleetDbContext).
                var q = Query;
                entries = entries.Where(e => EF.Functions.ToTsVector("simple", e.Message).Matches(EF.Functions.WebSearchToTsQuery("simple", q)));
            }
            else
            {
                foreach (var (text, exclude) in Terms)
                {
                    var pattern = "%" + Escape(text) + "%";
                    entries = exclude
                        ? entries.Where(e => !EF.Functions.Like(e.Message, pattern, "\\"))
                        : entries.Where(e => EF.Functions.Like(e.Message, pattern, "\\"));
                }
            }
        }
        return entries;
    }

    static string Escape(string text) => text.Replace("\\", "\\\\").Replace("%", "\\%").Replace("_", "\\_");
}

/// <summary>The Logs ops service: search (REST GET /api/v1/logs) and live follow.</summary>
sealed class LogsApi(IDbContextFactory<FleetDbContext> dbFactory, ILogFollowers followers, TimeProvider time, IOptions<LogsOptions> options)
    : Protocol.V1.Logs.LogsBase
{
    public const int DefaultLimit = 100, MaxLimit = 5000;
    static readonly TimeSpan DefaultWindow = TimeSpan.FromHours(24);

    public override async Task<SearchLogsResponse> SearchLogs(SearchLogsRequest request, ServerCallContext context)
    {
        var filter = LogFilter.Parse(request.Host, request.Source, request.Severity, request.Q);
        var to = request.To is null ? time.GetUtcNow().UtcDateTime : ApiArguments.Time(request.To, "to");
        var from = request.From is null ? to - DefaultWindow : ApiArguments.Time(request.From, "from");
        if (from > to) throw ApiArguments.Invalid($"from: {from:O} is after to: {to:O}");
        if (request.Limit < 0 || request.Limit > MaxLimit) throw ApiArguments.Invalid($"limit: {request.Limit} is out of range (1-{MaxLimit}; 0 means {DefaultLimit})");
        var limit = request.Limit == 0 ? DefaultLimit : request.Limit;
        var after = request.PageToken.Length == 0 ? ((DateTime, long)?)null : PageToken.Parse(request.PageToken);

        await using var db = dbFactory.CreateDbContext();
        var entries = await filter.ApplyAsync(db, db.Set<LogEntryRecord>().AsNoTracking().Where(e => e.Time >= from && e.Time <= to), context.CancellationToken);
        if (after is var (t, id))
            entries = request.OldestFirst
                ? entries.Where(e => e.Time > t || (e.Time == t && e.Id > id))
                : entries.Where(e => e.Time < t || (e.Time == t && e.Id < id));
        // A query of only -exclusions matches most lines: straight to the ordered walk.
        var words = string.Join(' ', filter.Terms.Where(t => !t.Exclude).Select(t => t.Text));
        var rows = words.Length > 0 && db.Database.IsNpgsql()
            ? await FewMatchesAsync(db, entries, words, request.OldestFirst, limit + 1, options.Value.SearchCandidates, context.CancellationToken)
            : null;
        rows ??= await InOrder(entries, request.OldestFirst).Take(limit + 1).ToListAsync(context.CancellationToken);

        var agentIds = rows.Select(r => r.AgentId).Distinct().ToList();
        var hostnames = await db.Agents.AsNoTracking().Where(a => agentIds.Contains(a.Id)).ToDictionaryAsync(a => a.Id, a => a.Hostname, context.CancellationToken);
        var response = new SearchLogsResponse();
        response.Entries.AddRange(rows.Take(limit).Select(r => LogRecords.ToProto(r, hostnames.GetValueOrDefault(r.AgentId, ""))));
        if (rows.Count > limit) response.NextPageToken = PageToken.Format(rows[limit - 1].Time, rows[limit - 1].Id);
        return response;
    }

    /// <summary>
    /// A lexeme in at least this share of the indexed lines is common: the time walk meets one every 200 lines or less.
    /// (PostgreSQL's most-common list at the default statistics target ends at about 0.5 %.)
    /// </summary>
    const double CommonFrequency = 0.005;

    static IOrderedQueryable<LogEntryRecord> InOrder(IQueryable<LogEntryRecord> entries, bool oldestFirst) => oldestFirst
        ? entries.OrderBy(e => e.Time).ThenBy(e => e.Id)
        : entries.OrderByDescending(e => e.Time).ThenByDescending(e => e.Id);

    /// <summary>
    /// PostgreSQL, a search with words: the page when the words match at most <paramref name="cap"/> entries, else null.
    /// <para>
    /// Why: "newest first, at most N" lets PostgreSQL walk the time index backwards and test each row's words, which is
    /// right for common words (a page is found after a few hundred rows) and wrong for rare ones — a request id, an IP,
    /// an order number, the usual first search of an incident — where it reads and tokenizes the whole window
    /// (17–19 s for a request id or an IP in 1.85 M lines, docs/benchmarks.md "Log search latency"). Its statistics cannot tell the two apart: a word too rare for the
    /// most-common list is estimated at half the rarest listed frequency, hundreds or thousands of rows.
    /// </para>
    /// <para>
    /// So first, in a transaction with plain index and sequential scans priced out (<c>SET LOCAL</c>: only bitmap
    /// scans are left, i.e. the text index, ANDed with the time index where that helps), read the (time, id) of at
    /// most cap + 1 matches. At most cap: that is every match, the page is sorted from those keys and read by id.
    /// More: the words are common, and the caller runs the ordered query, whose walk then meets a match at least every
    /// window/cap rows.
    /// </para>
    /// <para>
    /// Known-common words skip that first step, which would read their whole posting list only to give up: when every
    /// lexeme of the query's wanted <paramref name="words"/> is in the text index's most-common list (its statistics,
    /// from the last ANALYZE) with a frequency of at least <see cref="CommonFrequency"/>, null at once. A single rare or
    /// unlisted lexeme (ANDed by the query) keeps the first step; no statistics yet keeps it too.
    /// </para>
    /// </summary>
    static async Task<List<LogEntryRecord>?> FewMatchesAsync(FleetDbContext db, IQueryable<LogEntryRecord> entries, string words, bool oldestFirst,
        int take, int cap, CancellationToken cancellationToken)
    {
        // Repeatable read: the rows read by id are those the keys came from (a retention pass deleting some in between
        // would otherwise shorten the page and end the paging early).
        await using var tx = await db.Database.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        var common = await db.Database.SqlQuery<bool?>($"""
            SELECT bool_and(coalesce(s.freq, 0) >= {CommonFrequency}) AS "Value"
            FROM unnest(tsvector_to_array(to_tsvector('simple', {words}))) AS l(lexeme)
            LEFT JOIN LATERAL (
                SELECT f.freq FROM pg_stats ps, unnest(ps.most_common_elems::text::text[], ps.most_common_elem_freqs) AS f(elem, freq)
                WHERE ps.schemaname = current_schema() AND ps.tablename = {LogsIndexMerger.IndexName} AND f.elem = l.lexeme) s ON true
            """).SingleAsync(cancellationToken);
        if (common == true) return null;
        await db.Database.ExecuteSqlRawAsync("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off; SET LOCAL enable_indexonlyscan = off", cancellationToken);
        var keys = await entries.Select(e => new { e.Time, e.Id }).Take(cap + 1).ToListAsync(cancellationToken);
        if (keys.Count > cap) return null;
        var page = (oldestFirst ? keys.OrderBy(k => k.Time).ThenBy(k => k.Id) : keys.OrderByDescending(k => k.Time).ThenByDescending(k => k.Id))
            .Take(take).Select(k => k.Id).ToList();
        if (page.Count == 0) return [];
        return await InOrder(db.Set<LogEntryRecord>().AsNoTracking().Where(e => page.Contains(e.Id)), oldestFirst).ToListAsync(cancellationToken);
    }

    public override async Task FollowLogs(FollowLogsRequest request, IServerStreamWriter<LogRecord> responseStream, ServerCallContext context)
    {
        var filter = LogFilter.Parse(request.Host, request.Source, request.Severity, request.Q);
        using var subscription = followers.Subscribe();
        // Headers tell the client the follow is in place: everything stored from here on will reach it.
        await context.WriteResponseHeadersAsync([]);
        try
        {
            await foreach (var record in subscription.Reader.ReadAllAsync(context.CancellationToken))
                if (filter.Matches(record))
                    await responseStream.WriteAsync(record, context.CancellationToken);
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The client went away: the normal end of a follow.
        }
    }

    /// <summary>Keyset paging on (time, id): "ticks.id", base64url.</summary>
    static class PageToken
    {
        public static string Format(DateTime time, long id) =>
            Base64Url.EncodeToString(Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{time.Ticks}.{id}")));

        public static (DateTime, long) Parse(string token)
        {
            try
            {
                var parts = Encoding.ASCII.GetString(Base64Url.DecodeFromChars(token)).Split('.');
                if (parts.Length == 2
                    && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var ticks) && ticks <= DateTime.MaxValue.Ticks
                    && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var id))
                    return (new DateTime(ticks, DateTimeKind.Utc), id);
            }
            catch (FormatException) { }
            throw ApiArguments.Invalid($"page_token: '{token}' is not a token from a previous response");
        }
    }
}
