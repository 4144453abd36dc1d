using Npgsql;

namespace Fleet.Coordinator.Storage;

/// <summary>PostgreSQL session advisory locks: one replica leads a job for as long as it keeps the returned connection open.</summary>
public static class AdvisoryLock
{
    /// <summary>An open connection holding the lock, or null when another session holds it.</summary>
    public static async Task<NpgsqlConnection?> TryAcquireAsync(string connectionString, long key, CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock(@key)", connection);
        command.Parameters.AddWithValue("key", key);
        if (await command.ExecuteScalarAsync(cancellationToken) is true)
            return connection;
        await connection.DisposeAsync();
        return null;
    }
}
