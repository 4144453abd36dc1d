using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Coordinator.Checklists;

/// <summary>An operator's sign-off of a manual checklist item for one period; at most one per (item, period).</summary>
public sealed class ChecklistSignOffRecord
{
    public const int MaxComment = 1000;

    public long Id { get; set; }
    public required string ItemId { get; set; }
    /// <summary>Canonical period text ("2026-W48").</summary>
    public required string Period { get; set; }
    public required string SignedBy { get; set; }
    public DateTime SignedAt { get; set; }
    public string Comment { get; set; } = "";
}

sealed class ChecklistSignOffRecordConfiguration : IEntityTypeConfiguration<ChecklistSignOffRecord>
{
    public void Configure(EntityTypeBuilder<ChecklistSignOffRecord> b)
    {
        b.ToTable("checklist_signoffs");
        b.HasKey(s => s.Id);
        b.Property(s => s.ItemId).HasMaxLength(ChecklistCatalog.MaxIdLength);
        b.Property(s => s.Period).HasMaxLength(16);
        b.Property(s => s.SignedBy).HasMaxLength(128);
        b.Property(s => s.Comment).HasMaxLength(ChecklistSignOffRecord.MaxComment);
        b.HasIndex(s => new { s.ItemId, s.Period }).IsUnique();
        b.HasIndex(s => s.Period);
    }
}
