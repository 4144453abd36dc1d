using Fleet.Protocol;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Coordinator.Logs;

/// <summary>
/// One stored log entry. A file entry is identified by (agent, file id, offset), a journal entry by (agent, cursor):
/// both are unique (partial indexes), so an entry re-sent after an agent restart is stored once.
/// </summary>
public sealed class LogEntryRecord
{
    public const int MaxSource = 200;
    public const int MaxPath = 1024;
    public const int MaxFileId = 256;
    public const int MaxCursor = 1024;
    /// <summary>Longer messages are clipped (never rejected) and get the field <see cref="TruncatedField"/>.</summary>
    public const int MaxMessage = 64 * 1024;
    public const string TruncatedField = "fleet.truncated_from";

    public long Id { get; set; }
    public required string AgentId { get; set; }
    public string Source { get; set; } = "";
    public string Path { get; set; } = "";
    /// <summary>"DEV:INODE:FINGERPRINT" for file entries; null for the journal.</summary>
    public string? FileId { get; set; }
    public long? Offset { get; set; }
    /// <summary>The journal cursor; null for file entries.</summary>
    public string? Cursor { get; set; }
    public DateTime Time { get; set; }
    /// <summary>See <see cref="LogSeverity"/>: 0 unknown, 1 debug, 2 info, 3 warn, 4 error.</summary>
    public short Severity { get; set; }
    public string Message { get; set; } = "";
    /// <summary>JSON object of field name to value.</summary>
    public string FieldsJson { get; set; } = "{}";
    public DateTime ReceivedAt { get; set; }
}

sealed class LogEntryRecordConfiguration : IEntityTypeConfiguration<LogEntryRecord>
{
    public void Configure(EntityTypeBuilder<LogEntryRecord> b)
    {
        b.ToTable("log_entries");
        b.HasKey(e => e.Id);
        b.Property(e => e.Id).ValueGeneratedOnAdd();
        b.Property(e => e.AgentId).HasMaxLength(AgentIds.MaxLength);
        b.Property(e => e.Source).HasMaxLength(LogEntryRecord.MaxSource);
        b.Property(e => e.Path).HasMaxLength(LogEntryRecord.MaxPath);
        b.Property(e => e.FileId).HasMaxLength(LogEntryRecord.MaxFileId);
        b.Property(e => e.Cursor).HasMaxLength(LogEntryRecord.MaxCursor);
        b.HasIndex(e => new { e.AgentId, e.FileId, e.Offset }).IsUnique().HasFilter("\"FileId\" IS NOT NULL").HasDatabaseName("ux_log_entries_file");
        b.HasIndex(e => new { e.AgentId, e.Cursor }).IsUnique().HasFilter("\"Cursor\" IS NOT NULL").HasDatabaseName("ux_log_entries_cursor");
        b.HasIndex(e => new { e.AgentId, e.Time });
        b.HasIndex(e => e.Time);
    }
}

/// <summary>Severity levels as stored (ordered, so "at least warn" is a comparison).</summary>
public static class LogSeverity
{
    public const short Unknown = 0, Debug = 1, Info = 2, Warn = 3, Error = 4;

    public const string Names = "error, warn, info, debug";

    /// <summary>What an agent sent (lenient: common synonyms, anything else is unknown).</summary>
    public static short FromAgent(string? text) => TryParse(text, out var level) ? level : Unknown;

    public static bool TryParse(string? text, out short level)
    {
        level = (text ?? "").Trim().ToLowerInvariant() switch
        {
            "error" or "err" or "fatal" or "critical" or "crit" or "alert" or "emerg" or "emergency" or "panic" => Error,
            "warn" or "warning" => Warn,
            "info" or "information" or "notice" => Info,
            "debug" or "trace" => Debug,
            _ => Unknown,
        };
        return level != Unknown;
    }

    public static string Name(short level) => level switch
    {
        Error => "error",
        Warn => "warn",
        Info => "info",
        Debug => "debug",
        _ => "",
    };
}
