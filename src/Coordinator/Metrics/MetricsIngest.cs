using System.Text.Json;
using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using Microsoft.EntityFrameworkCore.Storage;
using NpgsqlTypes;
using Sample = (string AgentId, string Name, string Labels, System.DateTime Time, double Value);

namespace Fleet.Coordinator.Metrics;

/// <summary>
/// Stores metric batches in the ingest's dedupe transaction, then updates the latest values.
/// PostgreSQL: binary COPY into a per-session staging table, then one idempotent INSERT … ON CONFLICT DO NOTHING;
/// SQLite: batched inserts through EF.
/// </summary>
sealed class MetricsIngestHandler(ILatestMetrics latest) : IBatchPayloadHandler
{
    public Batch.PayloadOneofCase Payload => Batch.PayloadOneofCase.Metrics;

    public Task AddAsync(FleetDbContext db, string agentId, Batch batch, CancellationToken cancellationToken) =>
        AddGroupAsync(db, [(agentId, batch)], cancellationToken);

    public async Task AddGroupAsync(FleetDbContext db, IReadOnlyList<(string AgentId, Batch Batch)> batches, CancellationToken cancellationToken)
    {
        var rows = new List<Sample>();
        foreach (var (agentId, batch) in batches)
            foreach (var s in batch.Metrics.Samples)
            {
                if (string.IsNullOrEmpty(s.Name) || s.Name.Length > 200)
                    throw new ArgumentException($"metrics.samples.name: '{s.Name}' must be 1-200 characters");
                if (double.IsNaN(s.Value) || double.IsInfinity(s.Value))
                    throw new ArgumentException($"metrics.samples.value of '{s.Name}' is {s.Value}; only finite numbers are stored");
                rows.Add((agentId, s.Name, MetricLabels.Canonical(s.Labels), Time(s.TimeUnixMs), s.Value));
            }
        // A sample key (agent, name, labels, time) seen twice, in one group or in a batch stored before, is stored once: the
        // first value wins. A duplicate is an agent's mistake, never a reason to refuse the batch (that would stall its stream).
        rows = rows.DistinctBy(r => (r.AgentId, r.Name, r.Labels, r.Time)).ToList();
        // The rollups fold in only the samples this statement stored (RETURNING), so a key an earlier batch stored is
        // counted once in them too.
        var stored = db.Database.IsNpgsql()
            ? await CopyAsync(db, rows, cancellationToken)
            : await InsertSqliteAsync(db, rows, cancellationToken);
        await MetricRollups.UpsertAsync(db, MetricRollups.Aggregate(stored.Count == rows.Count ? rows : stored), cancellationToken);
        foreach (var (agentId, batch) in batches)
            AddProbes(db, agentId, batch);
    }

    static void AddProbes(FleetDbContext db, string agentId, Batch batch)
    {
        foreach (var p in batch.Metrics.Probes)
        {
            if (string.IsNullOrEmpty(p.Name) || p.Name.Length > 200)
                throw new ArgumentException($"metrics.probes.name: '{p.Name}' must be 1-200 characters");
            db.Set<ProbeResultRecord>().Add(new ProbeResultRecord
            {
                AgentId = agentId, Name = p.Name, Kind = p.Kind, Target = p.Target, Ok = p.Ok, LatencyMs = p.LatencyMs,
                Reason = p.Reason, ValuesJson = JsonSerializer.Serialize(p.Values.ToDictionary(v => v.Key, v => v.Value)), Time = Time(p.TimeUnixMs),
            });
        }
    }

    public Task AfterCommitAsync(string agentId, Batch batch, CancellationToken cancellationToken) =>
        latest.SetAsync(agentId, batch.Metrics.Samples, batch.Metrics.Probes, cancellationToken);

    static DateTime Time(long unixMs) => DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime;

    /// <summary>SQLite: multi-row INSERT … ON CONFLICT DO NOTHING RETURNING, 400 rows (2,000 parameters) a statement.</summary>
    static async Task<List<Sample>> InsertSqliteAsync(FleetDbContext db, List<Sample> samples, CancellationToken cancellationToken)
    {
        var stored = new List<Sample>(samples.Count);
        var connection = db.Database.GetDbConnection();
        foreach (var chunk in samples.Chunk(400))
        {
            await using var command = connection.CreateCommand();
            command.Transaction = db.Database.CurrentTransaction?.GetDbTransaction();
            var sql = new System.Text.StringBuilder("""INSERT INTO metric_samples ("AgentId", "Name", "Labels", "Time", "Value") VALUES """);
            for (var i = 0; i < chunk.Length; i++)
            {
                sql.Append(i == 0 ? "" : ", ").Append($"($a{i}, $n{i}, $l{i}, $t{i}, $v{i})");
                Add(command, $"$a{i}", chunk[i].AgentId);
                Add(command, $"$n{i}", chunk[i].Name);
                Add(command, $"$l{i}", chunk[i].Labels);
                Add(command, $"$t{i}", chunk[i].Time);
                Add(command, $"$v{i}", chunk[i].Value);
            }
            sql.Append(""" ON CONFLICT DO NOTHING RETURNING "AgentId", "Name", "Labels", "Time", "Value" """);
            command.CommandText = sql.ToString();
            await ReadStoredAsync(command, stored, cancellationToken);
        }
        return stored;

        static void Add(System.Data.Common.DbCommand command, string name, object value)
        {
            var p = command.CreateParameter();
            p.ParameterName = name;
            p.Value = value;
            command.Parameters.Add(p);
        }
    }

    static async Task ReadStoredAsync(System.Data.Common.DbCommand command, List<Sample> stored, CancellationToken cancellationToken)
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            stored.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2),
                DateTime.SpecifyKind(reader.GetDateTime(3), DateTimeKind.Utc), reader.GetDouble(4)));
    }

    static async Task<List<Sample>> CopyAsync(FleetDbContext db, List<Sample> samples, CancellationToken cancellationToken)
    {
        var stored = new List<Sample>(samples.Count);
        if (samples.Count == 0) return stored;
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await db.Database.ExecuteSqlRawAsync(
            """CREATE TEMP TABLE IF NOT EXISTS metric_staging ("AgentId" text, "Name" text, "Labels" text, "Time" timestamptz, "Value" double precision) ON COMMIT DELETE ROWS""",
            cancellationToken);
        await using (var import = await connection.BeginBinaryImportAsync(
            """COPY metric_staging ("AgentId", "Name", "Labels", "Time", "Value") FROM STDIN (FORMAT BINARY)""", cancellationToken))
        {
            foreach (var s in samples)
            {
                await import.StartRowAsync(cancellationToken);
                await import.WriteAsync(s.AgentId, NpgsqlDbType.Text, cancellationToken);
                await import.WriteAsync(s.Name, NpgsqlDbType.Text, cancellationToken);
                await import.WriteAsync(s.Labels, NpgsqlDbType.Text, cancellationToken);
                await import.WriteAsync(s.Time, NpgsqlDbType.TimestampTz, cancellationToken);
                await import.WriteAsync(s.Value, NpgsqlDbType.Double, cancellationToken);
            }
            await import.CompleteAsync(cancellationToken);
        }
        await using (var command = new NpgsqlCommand("""
            INSERT INTO metric_samples ("AgentId", "Name", "Labels", "Time", "Value")
            SELECT "AgentId", "Name", "Labels", "Time", "Value" FROM metric_staging
            ON CONFLICT DO NOTHING
            RETURNING "AgentId", "Name", "Labels", "Time", "Value";
            TRUNCATE metric_staging;
            """, connection, (NpgsqlTransaction?)db.Database.CurrentTransaction?.GetDbTransaction()))
            await ReadStoredAsync(command, stored, cancellationToken); // closing the reader runs the TRUNCATE too
        return stored;
    }
}
