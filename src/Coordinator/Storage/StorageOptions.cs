namespace Fleet.Coordinator.Storage;

public enum StorageProvider { Sqlite, Postgres }

/// <summary>
/// Section "Fleet:Storage". With no configuration the coordinator uses SQLite in the data directory;
/// setting ConnectionStrings:Postgres switches to PostgreSQL.
/// </summary>
public sealed class StorageOptions
{
    public const string Section = "Fleet:Storage";

    /// <summary>SQLite busy timeout: how long a writer waits for the lock before failing.</summary>
    public TimeSpan SqliteBusyTimeout { get; set; } = TimeSpan.FromSeconds(10);
}
