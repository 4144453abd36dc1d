using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Coordinator.Audit;

/// <summary>
/// One audit event. Inserted unsealed (Seq and Hash null) in the transaction of the change it describes; the
/// sealer then gives it its place in the chain. Never updated otherwise; deleted only by archiving retention.
/// </summary>
public sealed class AuditRecord
{
    public long Id { get; set; }
    public long? Seq { get; set; }
    public DateTime Time { get; set; }
    public required string ActorKind { get; set; }
    public required string Actor { get; set; }
    public string RemoteAddress { get; set; } = "";
    public required string Action { get; set; }
    public string Target { get; set; } = "";
    public string Host { get; set; } = "";
    public string ParametersJson { get; set; } = "{}";
    public string Outcome { get; set; } = "ok";
    public byte[]? Hash { get; set; }
}

/// <summary>Where archiving cut the chain: verification continues from this (seq, hash).</summary>
public sealed class AuditArchiveBoundary
{
    public long Id { get; set; }
    public long LastSeq { get; set; }
    public required byte[] LastHash { get; set; }
    public required string BlobKey { get; set; }
    public DateTime ArchivedAt { get; set; }
    public long Rows { get; set; }
}

sealed class AuditRecordConfiguration : IEntityTypeConfiguration<AuditRecord>
{
    public void Configure(EntityTypeBuilder<AuditRecord> b)
    {
        b.ToTable("audit_events");
        b.HasKey(a => a.Id);
        b.HasIndex(a => a.Seq).IsUnique();
        // The sealer's work list: only the few unsealed rows are in this index.
        b.HasIndex(a => a.Id).HasFilter("\"Seq\" IS NULL").HasDatabaseName("IX_audit_events_unsealed");
        b.HasIndex(a => a.Time);
        b.HasIndex(a => new { a.Host, a.Id });
        b.HasIndex(a => new { a.Actor, a.Id });
        b.HasIndex(a => new { a.Action, a.Id });
        b.Property(a => a.ActorKind).HasMaxLength(16);
        b.Property(a => a.Actor).HasMaxLength(128);
        b.Property(a => a.RemoteAddress).HasMaxLength(64);
        b.Property(a => a.Action).HasMaxLength(128);
        b.Property(a => a.Target).HasMaxLength(512);
        b.Property(a => a.Host).HasMaxLength(64);
    }
}

sealed class AuditArchiveBoundaryConfiguration : IEntityTypeConfiguration<AuditArchiveBoundary>
{
    public void Configure(EntityTypeBuilder<AuditArchiveBoundary> b)
    {
        b.ToTable("audit_archive_boundaries");
        b.HasKey(a => a.Id);
        b.HasIndex(a => a.LastSeq).IsUnique();
        b.Property(a => a.BlobKey).HasMaxLength(512);
    }
}
