using System.Data.Common;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace Fleet.Coordinator.Runs;

/// <summary>
/// Inserts of thousands of invocation rows at once, on the context's connection and transaction: PostgreSQL one
/// INSERT … SELECT FROM unnest(arrays); SQLite one prepared INSERT executed per row (in-process, no round trips).
/// Columns not named get the constants an untouched entity has.
/// </summary>
static class RunBulk
{
    public static Task InsertInvocationsAsync(FleetDbContext db, IReadOnlyList<InvocationRecord> rows, CancellationToken cancellationToken) =>
        InsertAsync(db, "invocations",
            [
                ("Id", rows.Select(r => r.Id).ToArray()),
                ("RunId", rows.Select(r => r.RunId).ToArray()),
                ("AgentId", rows.Select(r => r.AgentId).ToArray()),
                ("Hostname", rows.Select(r => r.Hostname).ToArray()),
                ("Ordinal", rows.Select(r => r.Ordinal).ToArray()),
                ("Canary", rows.Select(r => r.Canary).ToArray()),
                ("State", rows.Select(r => (int)r.State).ToArray()),
                ("CreatedAt", rows.Select(r => r.CreatedAt).ToArray()),
                ("UpdatedAt", rows.Select(r => r.UpdatedAt).ToArray()),
            ],
            """
            "ResultReported", "ExitCode", "Summary", "FiguresJson", "Error", "FailureKind", "ResultJson", "OutputBytes",
            "OutputHead", "OutputTail", "OutputFinalized", "DispatchAttempts"
            """,
            db.Database.IsNpgsql() ? "false, 0, '', '{}', '', '', '', 0, ''::bytea, ''::bytea, false, 0" : "0, 0, '', '{}', '', '', '', 0, X'', X'', 0, 0",
            cancellationToken);

    public static Task InsertTransitionsAsync(FleetDbContext db, IReadOnlyList<InvocationTransitionRecord> rows, CancellationToken cancellationToken) =>
        InsertAsync(db, "invocation_transitions",
            [
                ("InvocationId", rows.Select(r => r.InvocationId).ToArray()),
                ("State", rows.Select(r => (int)r.State).ToArray()),
                ("Time", rows.Select(r => r.Time).ToArray()),
                ("Detail", rows.Select(r => r.Detail).ToArray()),
            ],
            "", "", cancellationToken);

    /// <summary>PostgreSQL: runs <paramref name="sql"/> (array parameters, "RETURNING id") on the context's connection and transaction.</summary>
    public static async Task<List<string>> QueryIdsAsync(FleetDbContext db, string sql, (string Name, Array Values)[] parameters, CancellationToken cancellationToken)
    {
        var connection = db.Database.GetDbConnection();
        if (connection.State != System.Data.ConnectionState.Open) await db.Database.OpenConnectionAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.Transaction = db.Database.CurrentTransaction?.GetDbTransaction();
        command.CommandText = sql;
        foreach (var (name, values) in parameters)
            command.Parameters.Add(new NpgsqlParameter(name, values));
        var ids = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken)) ids.Add(reader.GetString(0));
        return ids;
    }

    static async Task InsertAsync(FleetDbContext db, string table, (string Name, Array Values)[] columns, string constantColumns, string constants, CancellationToken cancellationToken)
    {
        var count = columns[0].Values.Length;
        if (count == 0) return;
        var connection = db.Database.GetDbConnection();
        if (connection.State != System.Data.ConnectionState.Open) await db.Database.OpenConnectionAsync(cancellationToken);
        var transaction = db.Database.CurrentTransaction?.GetDbTransaction();
        var names = string.Join(", ", columns.Select(c => $"\"{c.Name}\""));
        var extraNames = constantColumns.Length > 0 ? ", " + constantColumns : "";
        var extraValues = constants.Length > 0 ? ", " + constants : "";
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        if (connection is NpgsqlConnection)
        {
            var parameters = string.Join(", ", columns.Select((_, i) => $"@p{i}"));
            command.CommandText = $"INSERT INTO {table} ({names}{extraNames}) SELECT v.*{extraValues} FROM unnest({parameters}) AS v";
            for (var i = 0; i < columns.Length; i++)
                command.Parameters.Add(new NpgsqlParameter($"p{i}", columns[i].Values));
            await command.ExecuteNonQueryAsync(cancellationToken);
            return;
        }
        command.CommandText = $"INSERT INTO {table} ({names}{extraNames}) VALUES ({string.Join(", ", columns.Select((_, i) => $"$p{i}"))}{extraValues})";
        var ps = new DbParameter[columns.Length];
        for (var i = 0; i < columns.Length; i++)
        {
            ps[i] = command.CreateParameter();
            ps[i].ParameterName = $"$p{i}";
            command.Parameters.Add(ps[i]);
        }
        await command.PrepareAsync(cancellationToken);
        for (var row = 0; row < count; row++)
        {
            for (var i = 0; i < columns.Length; i++) ps[i].Value = columns[i].Values.GetValue(row);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
    }
}
