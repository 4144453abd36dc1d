using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace Fleet.Coordinator.Storage;

/// <summary>Set-based writes for the ingest paths, where EF's change tracking costs more than the rows themselves.</summary>
public static class BulkInsert
{
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

    /// <summary>Inserts rows given column-wise, on the context's connection and transaction: PostgreSQL one INSERT … SELECT FROM
    /// unnest(arrays); SQLite one prepared INSERT executed per row (in-process, no round trips). <paramref name="constants"/>
    /// fill <paramref name="constantColumns"/> in every row.</summary>
    public static async Task InsertAsync(FleetDbContext db, string table, (string Name, Array Values)[] columns, string constantColumns, string constants, CancellationToken cancellationToken)
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
