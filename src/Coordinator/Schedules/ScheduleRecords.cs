using Fleet.Coordinator.Runs;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Coordinator.Schedules;

/// <summary>A maintenance window's definition. <see cref="SpecJson"/> holds the validated <see cref="ScheduleSpec"/>.</summary>
public sealed class ScheduleRecord
{
    public required string Id { get; set; }
    public required string Name { get; set; }
    public required string SpecJson { get; set; }
    public bool Enabled { get; set; } = true;
    public bool Paused { get; set; }
    /// <summary>Fire times after this instant count (set on create, on a change of cron or zone, on resume and on enable): nothing earlier is ever fired or missed.</summary>
    public DateTime ActiveFrom { get; set; }
    public DateTime CreatedAt { get; set; }
    public required string CreatedBy { get; set; }
    public DateTime UpdatedAt { get; set; }
    /// <summary>"api" or "defaults".</summary>
    public string Source { get; set; } = "api";
}

public enum OccurrenceState { Waiting, Open, Succeeded, Failed, Missed, Skipped }

public enum OccurrenceKind { Scheduled, Late, Manual }

/// <summary>
/// One occurrence of a schedule: the row whose INSERT claims it (unique on schedule and fire time), so every replica,
/// restart and retry agrees on who fires it. <see cref="SpecJson"/> is the definition as it was when claimed;
/// <see cref="StepsJson"/> the steps' states (each started step's run has a deterministic id, see <see cref="ScheduleIds"/>).
/// </summary>
public sealed class OccurrenceRecord
{
    public required string Id { get; set; }
    public required string ScheduleId { get; set; }
    public DateTime ScheduledUtc { get; set; }
    public DateTime EndsUtc { get; set; }
    public OccurrenceKind Kind { get; set; }
    public OccurrenceState State { get; set; }
    /// <summary>Why the occurrence is in its state; clipped to <see cref="MaxReason"/> (overlap reasons name other schedules).</summary>
    public string Reason { get => reason; set => reason = value.Length <= MaxReason ? value : value[..(MaxReason - 3)] + "..."; }
    string reason = "";

    public const int MaxReason = 512;
    public required string SpecJson { get; set; }
    public string HostsJson { get; set; } = "[]";
    public string StepsJson { get; set; } = "[]";
    public DateTime ClaimedAt { get; set; }
    public DateTime? OpenedAt { get; set; }
    public DateTime? ClosedAt { get; set; }
    public required string CreatedBy { get; set; }
    /// <summary>Optimistic concurrency: replicas advancing the same occurrence never both apply a step change.</summary>
    public int Version { get; set; }
}

/// <summary>One-time facts such as "the default schedules were loaded" (so an operator's deletions stick).</summary>
public sealed class ScheduleMarkerRecord
{
    public required string Key { get; set; }
    public DateTime At { get; set; }
}

sealed class ScheduleRecordConfiguration : IEntityTypeConfiguration<ScheduleRecord>
{
    public void Configure(EntityTypeBuilder<ScheduleRecord> b)
    {
        b.ToTable("schedules");
        b.HasKey(s => s.Id);
        b.Property(s => s.Id).HasMaxLength(ScheduleIds.MaxLength);
        b.Property(s => s.Name).HasMaxLength(256);
        b.Property(s => s.CreatedBy).HasMaxLength(256);
        b.Property(s => s.Source).HasMaxLength(16);
    }
}

sealed class OccurrenceRecordConfiguration : IEntityTypeConfiguration<OccurrenceRecord>
{
    public void Configure(EntityTypeBuilder<OccurrenceRecord> b)
    {
        b.ToTable("schedule_occurrences");
        b.HasKey(o => o.Id);
        b.Property(o => o.Id).HasMaxLength(RunIds.MaxLength);
        b.Property(o => o.ScheduleId).HasMaxLength(ScheduleIds.MaxLength);
        b.Property(o => o.Kind).HasConversion<string>().HasMaxLength(16);
        b.Property(o => o.State).HasConversion<string>().HasMaxLength(16);
        b.Property(o => o.Reason).HasMaxLength(OccurrenceRecord.MaxReason);
        b.Property(o => o.CreatedBy).HasMaxLength(256);
        b.Property(o => o.Version).IsConcurrencyToken();
        // The claim: one row per (schedule, fire time), whichever replica inserts it first.
        b.HasIndex(o => new { o.ScheduleId, o.ScheduledUtc }).IsUnique();
        b.HasIndex(o => o.State);
    }
}

sealed class ScheduleMarkerRecordConfiguration : IEntityTypeConfiguration<ScheduleMarkerRecord>
{
    public void Configure(EntityTypeBuilder<ScheduleMarkerRecord> b)
    {
        b.ToTable("schedule_markers");
        b.HasKey(m => m.Key);
        b.Property(m => m.Key).HasMaxLength(64);
    }
}
