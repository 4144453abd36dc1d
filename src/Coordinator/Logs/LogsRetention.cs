using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using Fleet.Coordinator.Blobs;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Logs;

/// <summary>
/// Deletes entries older than the retention. With Archive, each whole UTC day is first written to the blob store as
/// gzip JSON Lines in parts of at most <see cref="PartRows"/> rows (in id order) named by the part's first id:
/// logs/YYYY/MM/DD/part-FIRSTID.jsonl.gz. Each part is read back and compared, then exactly its rows are deleted,
/// so an interrupted run rewrites the same part (no duplicates) and entries arriving late for an archived day get a
/// new part (nothing overwritten).
/// </summary>
public sealed partial class LogsRetention(
    IDbContextFactory<FleetDbContext> dbFactory,
    IBlobStore blobs,
    IOptions<LogsOptions> options,
    TimeProvider time,
    ILogger<LogsRetention> logger) : BackgroundService
{
    public const string Prefix = "logs/";
    const int PartRows = 50_000;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.RetentionInterval, time);
        do
        {
            try { await RunOnceAsync(stoppingToken); }
            catch (Exception ex) when (ex is System.Data.Common.DbException or InvalidOperationException or IOException)
            {
                LogFailed(ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>One pass; returns the number of rows deleted.</summary>
    public async Task<long> RunOnceAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        var now = time.GetUtcNow().UtcDateTime;
        await using var db = dbFactory.CreateDbContext();
        var entries = db.Set<LogEntryRecord>();
        if (!o.Archive)
        {
            var before = now - o.Retention;
            var deleted = await entries.Where(e => e.Time < before).ExecuteDeleteAsync(cancellationToken);
            if (deleted > 0) LogDeleted(deleted, before);
            return deleted;
        }

        var cutoff = (now - o.Retention).Date; // whole UTC days only
        long total = 0;
        while (await entries.Where(e => e.Time < cutoff).MinAsync(e => (DateTime?)e.Time, cancellationToken) is { } oldest)
        {
            var day = oldest.Date;
            var next = day.AddDays(1);
            while (true)
            {
                var rows = await entries.AsNoTracking().Where(e => e.Time >= day && e.Time < next)
                    .OrderBy(e => e.Id).Take(PartRows).ToListAsync(cancellationToken);
                if (rows.Count == 0) break;
                var key = string.Create(CultureInfo.InvariantCulture, $"{Prefix}{day:yyyy}/{day:MM}/{day:dd}/part-{rows[0].Id}.jsonl.gz");
                var content = Archive(rows);
                await blobs.PutAsync(key, new MemoryStream(content), "application/gzip", cancellationToken);
                if (!await SameContentAsync(key, content, cancellationToken))
                    throw new IOException($"log archive {key} did not read back identical; nothing deleted");
                var ids = rows.Select(r => r.Id).ToList();
                var (first, last) = (ids[0], ids[^1]);
                var deleted = await entries.Where(e => e.Time >= day && e.Time < next && e.Id >= first && e.Id <= last && ids.Contains(e.Id))
                    .ExecuteDeleteAsync(cancellationToken);
                total += deleted;
                LogArchived(deleted, key);
            }
        }
        return total;
    }

    static byte[] Archive(List<LogEntryRecord> rows) => JsonLinesArchive.Gzip(rows, LogJson.Write);

    Task<bool> SameContentAsync(string key, byte[] expected, CancellationToken cancellationToken) =>
        JsonLinesArchive.HoldsAsync(blobs, key, expected, cancellationToken);

    [LoggerMessage(Level = LogLevel.Information, Message = "Logs retention deleted {Rows} entries older than {Before:O}")]
    partial void LogDeleted(int rows, DateTime before);

    [LoggerMessage(Level = LogLevel.Information, Message = "Archived and deleted {Rows} log entries to {Key}")]
    partial void LogArchived(int rows, string key);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Logs retention failed; retrying on the next pass")]
    partial void LogFailed(Exception exception);
}

/// <summary>The JSON shape of a log entry in archives (one object per line).</summary>
public static class LogJson
{
    public static void Write(Utf8JsonWriter writer, LogEntryRecord row)
    {
        writer.WriteStartObject();
        writer.WriteNumber("id", row.Id);
        writer.WriteString("agentId", row.AgentId);
        writer.WriteString("source", row.Source);
        writer.WriteString("path", row.Path);
        if (row.FileId is not null) writer.WriteString("fileId", row.FileId);
        if (row.Offset is { } offset) writer.WriteNumber("offset", offset);
        if (row.Cursor is not null) writer.WriteString("cursor", row.Cursor);
        writer.WriteString("time", row.Time.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture));
        writer.WriteString("severity", LogSeverity.Name(row.Severity));
        writer.WriteString("message", row.Message);
        writer.WritePropertyName("fields");
        using (var fields = JsonDocument.Parse(row.FieldsJson)) fields.WriteTo(writer);
        writer.WriteString("receivedAt", row.ReceivedAt.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture));
        writer.WriteEndObject();
    }
}
