using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using Fleet.Coordinator.Blobs;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Audit;

/// <summary>
/// The only delete path of the audit trail. Whole days older than the retention are first written to the blob
/// store (gzip JSON Lines), read back and compared, and only then deleted, in one transaction that records the
/// boundary (last seq and its hash) and an "audit.archived" event, so verification continues across the cut.
/// </summary>
public sealed partial class AuditRetention(
    IDbContextFactory<FleetDbContext> dbFactory,
    IBlobStore blobs,
    AuditLog auditLog,
    IOptions<AuditOptions> options,
    TimeProvider time,
    ILogger<AuditRetention> logger)
{
    public const string Prefix = "audit/archive/";
    const long MaxRowsPerRun = 200_000;

    /// <summary>Archives and deletes what is due; returns the number of rows deleted.</summary>
    public async Task<long> RunAsync(long anchoredThroughSeq, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var cutoff = (now - options.Value.Retention).Date; // whole UTC days only
        await using var db = dbFactory.CreateDbContext();
        var boundary = await db.Set<AuditArchiveBoundary>().MaxAsync(b => (long?)b.LastSeq, cancellationToken) ?? 0;
        var events = db.Set<AuditRecord>();
        var firstNewer = await events.Where(e => e.Seq > boundary && e.Time >= cutoff).MinAsync(e => e.Seq, cancellationToken);
        var lastSealed = await events.MaxAsync(e => e.Seq, cancellationToken) ?? boundary;
        // Bounded work per run (memory); a large backlog is archived over several runs, in seq order.
        var through = Math.Min(Math.Min(firstNewer is null ? lastSealed : firstNewer.Value - 1, anchoredThroughSeq), boundary + MaxRowsPerRun);
        if (through <= boundary) return 0;

        var rows = await events.AsNoTracking().Where(e => e.Seq > boundary && e.Seq <= through).OrderBy(e => e.Seq).ToListAsync(cancellationToken);
        if (rows.Count == 0 || rows[0].Seq != boundary + 1 || rows[^1].Seq != through || rows.Count != through - boundary)
        {
            LogGap(boundary + 1, through);
            return 0; // never archive around a hole: verification reports it instead
        }

        // One archive per UTC day, each read back and compared before anything is deleted.
        var key = "";
        foreach (var (day, dayRows) in ByDay(rows))
        {
            key = string.Create(CultureInfo.InvariantCulture, $"{Prefix}{day:yyyy-MM-dd}_{dayRows[0].Seq:D19}-{dayRows[^1].Seq:D19}.jsonl.gz");
            var content = Archive(dayRows);
            await blobs.PutAsync(key, new MemoryStream(content), "application/gzip", cancellationToken);
            if (!await SameContentAsync(key, content, cancellationToken))
                throw new IOException($"audit archive {key} did not read back identical; nothing deleted");
        }

        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var deleted = await events.Where(e => e.Seq > boundary && e.Seq <= through).ExecuteDeleteAsync(cancellationToken);
        db.Set<AuditArchiveBoundary>().Add(new AuditArchiveBoundary
        {
            LastSeq = through,
            LastHash = rows[^1].Hash!,
            BlobKey = key,
            ArchivedAt = now,
            Rows = deleted,
        });
        auditLog.Add(db, Actor.System("retention"), "audit.archived", target: key, parameters: new Dictionary<string, string?>
        {
            ["fromSeq"] = (boundary + 1).ToString(CultureInfo.InvariantCulture),
            ["toSeq"] = through.ToString(CultureInfo.InvariantCulture),
            ["rows"] = deleted.ToString(CultureInfo.InvariantCulture),
            ["lastHash"] = AuditChain.Hex(rows[^1].Hash),
        });
        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        LogArchived(deleted, boundary + 1, through, key);
        return deleted;
    }

    /// <summary>
    /// Splits rows (in seq order) into UTC days. A row never goes to an earlier day than the row before it
    /// (times are not strictly ordered by seq), so each day's file is one contiguous seq range.
    /// </summary>
    static IEnumerable<(DateTime Day, List<AuditRecord> Rows)> ByDay(List<AuditRecord> rows)
    {
        var day = DateTime.MinValue;
        List<AuditRecord>? current = null;
        foreach (var row in rows)
        {
            if (row.Time.Date > day)
            {
                if (current is not null) yield return (day, current);
                day = row.Time.Date;
                current = [];
            }
            current!.Add(row);
        }
        if (current is not null) yield return (day, current);
    }

    static byte[] Archive(List<AuditRecord> rows) => JsonLinesArchive.Gzip(rows, AuditJson.Write);

    Task<bool> SameContentAsync(string key, byte[] expected, CancellationToken cancellationToken) =>
        JsonLinesArchive.HoldsAsync(blobs, key, expected, cancellationToken);

    [LoggerMessage(Level = LogLevel.Information, Message = "Archived and deleted {Rows} audit rows (seq {From}..{To}) to {Key}")]
    partial void LogArchived(long rows, long from, long to, string key);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Audit rows seq {From}..{To} have a gap; not archiving (run verify)")]
    partial void LogGap(long from, long to);
}

/// <summary>The JSON shape of an audit row in archives and exports (same field names as the API).</summary>
public static class AuditJson
{
    public static void Write(Utf8JsonWriter writer, AuditRecord row)
    {
        writer.WriteStartObject();
        writer.WriteNumber("id", row.Id);
        writer.WriteNumber("seq", row.Seq ?? 0);
        writer.WriteString("time", row.Time.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture));
        writer.WriteString("actorKind", row.ActorKind);
        writer.WriteString("actor", row.Actor);
        writer.WriteString("remoteAddress", row.RemoteAddress);
        writer.WriteString("action", row.Action);
        writer.WriteString("target", row.Target);
        writer.WriteString("host", row.Host);
        writer.WriteString("parametersJson", row.ParametersJson);
        writer.WriteString("outcome", row.Outcome);
        writer.WriteString("hash", AuditChain.Hex(row.Hash));
        writer.WriteEndObject();
    }
}
