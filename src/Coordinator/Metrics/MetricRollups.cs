using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace Fleet.Coordinator.Metrics;

/// <summary>
/// Folds each stored batch into 1-minute and 1-hour rollups inside the same transaction, so rollups are exact
/// (a redelivered batch never reaches here twice) and need no background recomputation.
/// PostgreSQL: one INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE; SQLite: one upsert per bucket.
/// </summary>
static class MetricRollups
{
    public static readonly int[] Resolutions = [60, 3600];

    public readonly record struct Bucketed(string AgentId, string Name, string Labels, int Resolution, DateTime Bucket, double Min, double Max, double Sum, long Count, double Last, DateTime LastTime);

    public static List<Bucketed> Aggregate(IEnumerable<(string AgentId, string Name, string Labels, DateTime Time, double Value)> samples)
    {
        var result = new Dictionary<(string, string, string, int, DateTime), Bucketed>();
        foreach (var s in samples)
            foreach (var resolution in Resolutions)
            {
                var bucket = new DateTime(s.Time.Ticks - s.Time.Ticks % TimeSpan.FromSeconds(resolution).Ticks, DateTimeKind.Utc);
                var key = (s.AgentId, s.Name, s.Labels, resolution, bucket);
                result[key] = result.TryGetValue(key, out var a)
                    ? a with
                    {
                        Min = Math.Min(a.Min, s.Value),
                        Max = Math.Max(a.Max, s.Value),
                        Sum = a.Sum + s.Value,
                        Count = a.Count + 1,
                        Last = s.Time >= a.LastTime ? s.Value : a.Last,
                        LastTime = s.Time >= a.LastTime ? s.Time : a.LastTime,
                    }
                    : new Bucketed(s.AgentId, s.Name, s.Labels, resolution, bucket, s.Value, s.Value, s.Value, 1, s.Value, s.Time);
            }
        return [.. result.Values];
    }

    public static async Task UpsertAsync(FleetDbContext db, List<Bucketed> aggregates, CancellationToken cancellationToken)
    {
        if (aggregates.Count == 0) return;
        if (db.Database.IsNpgsql())
        {
            var connection = (NpgsqlConnection)db.Database.GetDbConnection();
            await using var command = new NpgsqlCommand("""
                INSERT INTO metric_rollups AS r ("AgentId", "Name", "Labels", "Resolution", "Bucket", "Min", "Max", "Sum", "Count", "Last", "LastTime")
                SELECT * FROM unnest(@agents, @names, @labels, @resolutions, @buckets, @mins, @maxs, @sums, @counts, @lasts, @lastTimes)
                ON CONFLICT ("AgentId", "Name", "Labels", "Resolution", "Bucket") DO UPDATE SET
                  "Min" = LEAST(r."Min", excluded."Min"),
                  "Max" = GREATEST(r."Max", excluded."Max"),
                  "Sum" = r."Sum" + excluded."Sum",
                  "Count" = r."Count" + excluded."Count",
                  "Last" = CASE WHEN excluded."LastTime" >= r."LastTime" THEN excluded."Last" ELSE r."Last" END,
                  "LastTime" = GREATEST(r."LastTime", excluded."LastTime")
                """, connection, (NpgsqlTransaction?)db.Database.CurrentTransaction?.GetDbTransaction());
            command.Parameters.AddWithValue("agents", aggregates.Select(a => a.AgentId).ToArray());
            command.Parameters.AddWithValue("names", aggregates.Select(a => a.Name).ToArray());
            command.Parameters.AddWithValue("labels", aggregates.Select(a => a.Labels).ToArray());
            command.Parameters.AddWithValue("resolutions", aggregates.Select(a => a.Resolution).ToArray());
            command.Parameters.AddWithValue("buckets", aggregates.Select(a => a.Bucket).ToArray());
            command.Parameters.AddWithValue("mins", aggregates.Select(a => a.Min).ToArray());
            command.Parameters.AddWithValue("maxs", aggregates.Select(a => a.Max).ToArray());
            command.Parameters.AddWithValue("sums", aggregates.Select(a => a.Sum).ToArray());
            command.Parameters.AddWithValue("counts", aggregates.Select(a => a.Count).ToArray());
            command.Parameters.AddWithValue("lasts", aggregates.Select(a => a.Last).ToArray());
            command.Parameters.AddWithValue("lastTimes", aggregates.Select(a => a.LastTime).ToArray());
            await command.ExecuteNonQueryAsync(cancellationToken);
            return;
        }
        foreach (var a in aggregates)
            await db.Database.ExecuteSqlInterpolatedAsync($"""
                INSERT INTO metric_rollups ("AgentId", "Name", "Labels", "Resolution", "Bucket", "Min", "Max", "Sum", "Count", "Last", "LastTime")
                VALUES ({a.AgentId}, {a.Name}, {a.Labels}, {a.Resolution}, {a.Bucket}, {a.Min}, {a.Max}, {a.Sum}, {a.Count}, {a.Last}, {a.LastTime})
                ON CONFLICT ("AgentId", "Name", "Labels", "Resolution", "Bucket") DO UPDATE SET
                  "Min" = min("Min", excluded."Min"),
                  "Max" = max("Max", excluded."Max"),
                  "Sum" = "Sum" + excluded."Sum",
                  "Count" = "Count" + excluded."Count",
                  "Last" = CASE WHEN excluded."LastTime" >= "LastTime" THEN excluded."Last" ELSE "Last" END,
                  "LastTime" = max("LastTime", excluded."LastTime")
                """, cancellationToken);
    }
}
