using System.Runtime.CompilerServices;
using System.Text.Json;
using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.Coordinator.Logs;

/// <summary>
/// Stores log batches in the ingest's dedupe transaction, idempotently on (agent, file id, offset) and (agent, cursor).
/// PostgreSQL: when one indexed look-up shows that no entry of the group is stored yet (the normal case), the group is
/// binary-COPYed straight into log_entries with ids taken from its sequence; otherwise (a redelivery, an entry twice in
/// the group, or the one-by-one fallback) it is COPYed into a staging table and inserted with ON CONFLICT DO NOTHING.
/// A concurrent writer storing the same entry between the look-up and the COPY makes the unique index fail the group,
/// which BatchIngest then stores batch by batch, through the ON CONFLICT path. SQLite uses INSERT OR IGNORE.
/// The rows actually inserted (not the ones already stored) go to live followers after the commit.
/// </summary>
sealed partial class LogsIngestHandler(ILogFollowers followers, TimeProvider time, ILogger<LogsIngestHandler> logger) : IBatchPayloadHandler
{
    // The rows a batch inserted, from AddGroupAsync to AfterCommitAsync (gone with the batch when the transaction fails).
    readonly ConditionalWeakTable<Batch, List<LogRecord>> inserted = new();

    public Batch.PayloadOneofCase Payload => Batch.PayloadOneofCase.Logs;

    // The one-by-one path (BatchIngest's fallback after a failed group) never takes the direct COPY.
    public Task AddAsync(FleetDbContext db, string agentId, Batch batch, CancellationToken cancellationToken) =>
        AddAsync(db, [(agentId, batch)], direct: false, cancellationToken);

    public Task AddGroupAsync(FleetDbContext db, IReadOnlyList<(string AgentId, Batch Batch)> batches, CancellationToken cancellationToken) =>
        AddAsync(db, batches, direct: true, cancellationToken);

    async Task AddAsync(FleetDbContext db, IReadOnlyList<(string AgentId, Batch Batch)> batches, bool direct, CancellationToken cancellationToken)
    {
        var started = time.GetTimestamp();
        var now = time.GetUtcNow().UtcDateTime;
        var rows = new List<(Batch Batch, LogEntryRecord Row)>();
        foreach (var (agentId, batch) in batches)
            foreach (var entry in batch.Logs.Entries)
                rows.Add((batch, ToRecord(agentId, entry, now)));
        if (rows.Count == 0) return;
        var converted = time.GetElapsedTime(started);

        var timing = new WriteTiming();
        var ids = db.Database.IsNpgsql()
            ? await CopyAsync(db, rows.Select(r => r.Row).ToList(), direct, timing, time, cancellationToken)
            : await InsertOrIgnoreAsync(db, rows.Select(r => r.Row).ToList(), cancellationToken);
        var written = time.GetElapsedTime(started);

        var agentIds = batches.Select(b => b.AgentId).Distinct().ToList();
        var hostnames = await db.Agents.AsNoTracking().Where(a => agentIds.Contains(a.Id))
            .ToDictionaryAsync(a => a.Id, a => a.Hostname, cancellationToken);
        foreach (var (_, batch) in batches) inserted.AddOrUpdate(batch, []);
        for (var i = 0; i < rows.Count; i++)
        {
            if (ids[i] is not { } id) continue;
            var (batch, row) = rows[i];
            row.Id = id;
            inserted.TryGetValue(batch, out var list);
            list!.Add(LogRecords.ToProto(row, hostnames.GetValueOrDefault(row.AgentId, "")));
        }
        LogStored(rows.Count, batches.Count, timing.Direct ? "direct" : "staged", converted.TotalMilliseconds, timing.CopyMs, timing.InsertMs,
            (written - converted).TotalMilliseconds - timing.CopyMs - timing.InsertMs, (time.GetElapsedTime(started) - written).TotalMilliseconds);
    }

    /// <summary>Where the PostgreSQL write of a group spent its time (for the Debug timing log).</summary>
    sealed class WriteTiming
    {
        public bool Direct;
        public double CopyMs;
        public double InsertMs;
    }

    // "insert" is the staging path's INSERT … ON CONFLICT, or the direct path's look-up and id allocation.
    [LoggerMessage(Level = LogLevel.Debug, Message = "Stored {Rows} log entries of {Batches} batches ({Path}): convert {ConvertMs:0.0} ms, copy {CopyMs:0.0} ms, insert {InsertMs:0.0} ms, other SQL {OtherMs:0.0} ms, followers {FollowersMs:0.0} ms")]
    partial void LogStored(int rows, int batches, string path, double convertMs, double copyMs, double insertMs, double otherMs, double followersMs);

    public async Task AfterCommitAsync(string agentId, Batch batch, CancellationToken cancellationToken)
    {
        if (!inserted.TryGetValue(batch, out var records)) return;
        inserted.Remove(batch);
        if (records.Count > 0) await followers.PublishAsync(records, cancellationToken);
    }

    /// <summary>Validates and normalises one entry. Long text is clipped; an entry without identity rejects the batch.</summary>
    internal static LogEntryRecord ToRecord(string agentId, LogEntry entry, DateTime now)
    {
        var fileId = string.IsNullOrEmpty(entry.FileId) ? null : entry.FileId;
        var cursor = string.IsNullOrEmpty(entry.Cursor) ? null : entry.Cursor;
        if (fileId is null && cursor is null)
            throw new ArgumentException($"logs.entries.file_id: an entry of source '{Clip(entry.Source, 100)}' has neither a file_id nor a cursor; one identifies it");
        if (fileId is { Length: > LogEntryRecord.MaxFileId })
            throw new ArgumentException($"logs.entries.file_id: {fileId.Length} characters; at most {LogEntryRecord.MaxFileId}");
        if (cursor is { Length: > LogEntryRecord.MaxCursor })
            throw new ArgumentException($"logs.entries.cursor: {cursor.Length} characters; at most {LogEntryRecord.MaxCursor}");
        if (entry.Offset > long.MaxValue)
            throw new ArgumentException($"logs.entries.offset: {entry.Offset} is out of range");

        var fields = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in entry.Fields) fields[Text(Clip(k, 200))] = Text(Clip(v, 4096));
        var message = Text(entry.Message);
        if (message.Length > LogEntryRecord.MaxMessage)
        {
            fields[LogEntryRecord.TruncatedField] = message.Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            message = Clip(message, LogEntryRecord.MaxMessage);
        }
        return new LogEntryRecord
        {
            AgentId = agentId,
            Source = Text(Clip(entry.Source, LogEntryRecord.MaxSource)),
            Path = Text(Clip(entry.Path, LogEntryRecord.MaxPath)),
            FileId = fileId is null ? null : Text(fileId),
            Offset = fileId is null ? null : (long)entry.Offset,
            Cursor = cursor is null ? null : Text(cursor),
            // Out of range throws ArgumentOutOfRangeException: the batch is rejected naming the problem.
            Time = entry.TimeUnixMs == 0 ? now : DateTimeOffset.FromUnixTimeMilliseconds(entry.TimeUnixMs).UtcDateTime,
            Severity = LogSeverity.FromAgent(entry.Severity),
            Message = message,
            FieldsJson = JsonSerializer.Serialize(fields),
            ReceivedAt = now,
        };
    }

    /// <summary>At most <paramref name="max"/> characters, never splitting a surrogate pair.</summary>
    static string Clip(string text, int max)
    {
        if (text.Length <= max) return text;
        var end = char.IsHighSurrogate(text[max - 1]) ? max - 1 : max;
        return text[..end];
    }

    /// <summary>PostgreSQL text cannot hold NUL; it becomes U+FFFD rather than failing the batch forever.</summary>
    static string Text(string text) => text.Contains('\0', StringComparison.Ordinal) ? text.Replace('\0', '\uFFFD') : text;

    const string Columns = """("AgentId", "Source", "Path", "FileId", "Offset", "Cursor", "Time", "Severity", "Message", "FieldsJson", "ReceivedAt")""";

    /// <summary>Inserts the rows; returns per row its new id, or null when it was already stored.</summary>
    static async Task<long?[]> CopyAsync(FleetDbContext db, List<LogEntryRecord> rows, bool direct, WriteTiming timing, TimeProvider time, CancellationToken cancellationToken)
    {
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        var transaction = (NpgsqlTransaction?)db.Database.CurrentTransaction?.GetDbTransaction();
        var positions = new Dictionary<(string, string?, long?, string?), int>(rows.Count);
        for (var i = 0; i < rows.Count; i++) positions[Key(rows[i])] = i;
        // An entry twice in the group (a batch re-read after a restart next to its first delivery) would fail the COPY.
        if (direct && positions.Count == rows.Count)
        {
            var lookupStarted = time.GetTimestamp();
            if (!await AnyStoredAsync(connection, transaction, rows, cancellationToken))
            {
                var ids = await NextIdsAsync(connection, transaction, rows.Count, cancellationToken);
                timing.InsertMs = time.GetElapsedTime(lookupStarted).TotalMilliseconds;
                var directStarted = time.GetTimestamp();
                await WriteRowsAsync(connection, $"""COPY log_entries ("Id", {Columns[1..]} FROM STDIN (FORMAT BINARY)""", rows, ids, cancellationToken);
                timing.CopyMs = time.GetElapsedTime(directStarted).TotalMilliseconds;
                timing.Direct = true;
                return [.. ids.Select(id => (long?)id)];
            }
            timing.InsertMs = time.GetElapsedTime(lookupStarted).TotalMilliseconds;
        }
        return await StagedAsync(db, connection, transaction, rows, positions, timing, time, cancellationToken);
    }

    /// <summary>
    /// Whether any of the rows' identities may already be stored: per (agent, file id) one range probe of
    /// ux_log_entries_file over the group's offsets (conservative: any stored entry inside the range counts), and each
    /// cursor through ux_log_entries_cursor. True sends the group to the staging path, which is always correct.
    /// </summary>
    static async Task<bool> AnyStoredAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, List<LogEntryRecord> rows, CancellationToken cancellationToken)
    {
        var files = rows.Where(r => r.FileId is not null)
            .GroupBy(r => (r.AgentId, r.FileId!))
            .Select(g => (g.Key.AgentId, FileId: g.Key.Item2, Min: g.Min(r => r.Offset!.Value), Max: g.Max(r => r.Offset!.Value)))
            .ToList();
        var cursors = rows.Where(r => r.Cursor is not null).ToList();
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            SELECT EXISTS (SELECT 1 FROM unnest(@fa, @ff, @fmin, @fmax) AS k(a, f, lo, hi)
                               WHERE EXISTS (SELECT 1 FROM log_entries e WHERE e."AgentId" = k.a AND e."FileId" = k.f AND e."Offset" BETWEEN k.lo AND k.hi))
                OR EXISTS (SELECT 1 FROM unnest(@ca, @cc) AS k(a, c)
                               WHERE EXISTS (SELECT 1 FROM log_entries e WHERE e."AgentId" = k.a AND e."Cursor" = k.c))
            """;
        command.Parameters.Add(new NpgsqlParameter<string[]>("fa", files.Select(f => f.AgentId).ToArray()));
        command.Parameters.Add(new NpgsqlParameter<string[]>("ff", files.Select(f => f.FileId).ToArray()));
        command.Parameters.Add(new NpgsqlParameter<long[]>("fmin", files.Select(f => f.Min).ToArray()));
        command.Parameters.Add(new NpgsqlParameter<long[]>("fmax", files.Select(f => f.Max).ToArray()));
        command.Parameters.Add(new NpgsqlParameter<string[]>("ca", cursors.Select(r => r.AgentId).ToArray()));
        command.Parameters.Add(new NpgsqlParameter<string[]>("cc", cursors.Select(r => r.Cursor!).ToArray()));
        return (bool)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>The next <paramref name="count"/> values of log_entries' identity sequence, ascending.</summary>
    static async Task<long[]> NextIdsAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, int count, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """SELECT nextval(pg_get_serial_sequence('log_entries', 'Id')) FROM generate_series(1, @count)""";
        command.Parameters.Add(new NpgsqlParameter<int>("count", count));
        var ids = new long[count];
        var n = 0;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            while (await reader.ReadAsync(cancellationToken)) ids[n++] = reader.GetInt64(0);
        if (n != count) throw new InvalidOperationException($"log_entries: {n} ids allocated for {count} rows");
        Array.Sort(ids);
        return ids;
    }

    /// <summary>
    /// The rows through a binary COPY: into log_entries with the given ids, or (ids null) into the staging table with
    /// each row's position as "Ord".
    /// </summary>
    static async Task WriteRowsAsync(NpgsqlConnection connection, string copy, List<LogEntryRecord> rows, long[]? ids, CancellationToken cancellationToken)
    {
        await using var import = await connection.BeginBinaryImportAsync(copy, cancellationToken);
        // Synchronous writes: they only fill Npgsql's buffer (flushed, blocking, every few KiB), while an await per
        // value cost more CPU than the rest of the batch's conversion (12 per row, a million rows a minute).
        for (var i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            import.StartRow();
            if (ids is null) import.Write(i, NpgsqlDbType.Integer);
            else import.Write(ids[i], NpgsqlDbType.Bigint);
            import.Write(r.AgentId, NpgsqlDbType.Text);
            import.Write(r.Source, NpgsqlDbType.Text);
            import.Write(r.Path, NpgsqlDbType.Text);
            if (r.FileId is null) import.WriteNull(); else import.Write(r.FileId, NpgsqlDbType.Text);
            if (r.Offset is null) import.WriteNull(); else import.Write(r.Offset.Value, NpgsqlDbType.Bigint);
            if (r.Cursor is null) import.WriteNull(); else import.Write(r.Cursor, NpgsqlDbType.Text);
            import.Write(r.Time, NpgsqlDbType.TimestampTz);
            import.Write(r.Severity, NpgsqlDbType.Smallint);
            import.Write(r.Message, NpgsqlDbType.Text);
            import.Write(r.FieldsJson, NpgsqlDbType.Text);
            import.Write(r.ReceivedAt, NpgsqlDbType.TimestampTz);
        }
        await import.CompleteAsync(cancellationToken);
    }

    /// <summary>COPY into the staging table, then INSERT … ON CONFLICT DO NOTHING: stores only what is not stored yet.</summary>
    static async Task<long?[]> StagedAsync(FleetDbContext db, NpgsqlConnection connection, NpgsqlTransaction? transaction, List<LogEntryRecord> rows,
        Dictionary<(string, string?, long?, string?), int> positions, WriteTiming timing, TimeProvider time, CancellationToken cancellationToken)
    {
        await db.Database.ExecuteSqlRawAsync("""
            CREATE TEMP TABLE IF NOT EXISTS log_staging ("Ord" integer, "AgentId" text, "Source" text, "Path" text, "FileId" text, "Offset" bigint,
                "Cursor" text, "Time" timestamptz, "Severity" smallint, "Message" text, "FieldsJson" text, "ReceivedAt" timestamptz) ON COMMIT DELETE ROWS
            """, cancellationToken);
        var copyStarted = time.GetTimestamp();
        await WriteRowsAsync(connection, $"""COPY log_staging ("Ord", {Columns[1..]} FROM STDIN (FORMAT BINARY)""", rows, null, cancellationToken);
        timing.CopyMs = time.GetElapsedTime(copyStarted).TotalMilliseconds;

        // Rows are inserted in staging order; RETURNING names each inserted row by its identity, mapped back to its position.
        var ids = new long?[rows.Count];
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = $"""
            INSERT INTO log_entries {Columns}
            SELECT {Columns[1..^1]} FROM log_staging ORDER BY "Ord"
            ON CONFLICT DO NOTHING
            RETURNING "Id", "AgentId", "FileId", "Offset", "Cursor"
            """;
        var insertStarted = time.GetTimestamp();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            while (await reader.ReadAsync(cancellationToken))
            {
                var key = (reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2), reader.IsDBNull(3) ? (long?)null : reader.GetInt64(3), reader.IsDBNull(4) ? null : reader.GetString(4));
                if (positions.TryGetValue(key, out var position)) ids[position] = reader.GetInt64(0);
            }
        timing.InsertMs += time.GetElapsedTime(insertStarted).TotalMilliseconds;
        // No TRUNCATE: ON COMMIT DELETE ROWS empties the staging table at the commit anyway (a second group in the same
        // transaction would only re-offer rows the ON CONFLICT skips), and each truncation is a file operation.
        return ids;
    }

    static (string, string?, long?, string?) Key(LogEntryRecord r) => (r.AgentId, r.FileId, r.Offset, r.Cursor);

    static async Task<long?[]> InsertOrIgnoreAsync(FleetDbContext db, List<LogEntryRecord> rows, CancellationToken cancellationToken)
    {
        var connection = db.Database.GetDbConnection();
        await using var command = connection.CreateCommand();
        command.Transaction = db.Database.CurrentTransaction?.GetDbTransaction();
        var names = new[] { "AgentId", "Source", "Path", "FileId", "Offset", "Cursor", "Time", "Severity", "Message", "FieldsJson", "ReceivedAt" };
        command.CommandText = $"""INSERT OR IGNORE INTO log_entries {Columns} VALUES ({string.Join(", ", names.Select(n => "$" + n))}) RETURNING "Id" """;
        var parameters = names.ToDictionary(n => n, n =>
        {
            var p = command.CreateParameter();
            p.ParameterName = "$" + n;
            command.Parameters.Add(p);
            return p;
        });
        var ids = new long?[rows.Count];
        for (var i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            parameters["AgentId"].Value = r.AgentId;
            parameters["Source"].Value = r.Source;
            parameters["Path"].Value = r.Path;
            parameters["FileId"].Value = (object?)r.FileId ?? DBNull.Value;
            parameters["Offset"].Value = (object?)r.Offset ?? DBNull.Value;
            parameters["Cursor"].Value = (object?)r.Cursor ?? DBNull.Value;
            parameters["Time"].Value = SqliteTime(r.Time);
            parameters["Severity"].Value = r.Severity;
            parameters["Message"].Value = r.Message;
            parameters["FieldsJson"].Value = r.FieldsJson;
            parameters["ReceivedAt"].Value = SqliteTime(r.ReceivedAt);
            var id = await command.ExecuteScalarAsync(cancellationToken);
            ids[i] = id is null or DBNull ? null : Convert.ToInt64(id, System.Globalization.CultureInfo.InvariantCulture);
        }
        return ids;
    }

    /// <summary>The text EF Core's SQLite provider stores for a DateTime, so comparisons in queries stay correct.</summary>
    static string SqliteTime(DateTime value) =>
        value.ToString("yyyy-MM-dd HH:mm:ss.FFFFFFF", System.Globalization.CultureInfo.InvariantCulture);
}

static class LogRecords
{
    public static LogRecord ToProto(LogEntryRecord row, string hostname)
    {
        var record = new LogRecord
        {
            Id = row.Id,
            AgentId = row.AgentId,
            Hostname = hostname,
            Source = row.Source,
            Path = row.Path,
            Time = Timestamp.FromDateTime(DateTime.SpecifyKind(row.Time, DateTimeKind.Utc)),
            Severity = LogSeverity.Name(row.Severity),
            Message = row.Message,
        };
        if (row.FieldsJson.Length > 2 && JsonSerializer.Deserialize<Dictionary<string, string>>(row.FieldsJson) is { } fields)
            record.Fields.Add(fields);
        return record;
    }
}
