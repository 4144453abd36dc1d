using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Coordinator.Alerts;

/// <summary>A stored rule: the <see cref="Protocol.V1.Rule"/> as protobuf JSON, validated on save and on load.</summary>
public sealed class AlertRuleRecord
{
    public long Id { get; set; }
    public required string Name { get; set; }
    public required string Kind { get; set; }
    public required string Severity { get; set; }
    /// <summary>The whole rule (protobuf JSON of <see cref="Protocol.V1.Rule"/>, id and timestamps excluded).</summary>
    public string DefinitionJson { get; set; } = "{}";
    public bool Disabled { get; set; }
    /// <summary>Shipped in deploy/rules (loaded on first start); an operator may edit or delete it like any other.</summary>
    public bool DefaultRule { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime UpdatedAt { get; set; }
}

/// <summary>The marker written with the default rules on first start: once it exists, defaults are never loaded again (operator edits stick).</summary>
public sealed class AlertRuleDefaultsMarker
{
    public required string Key { get; set; }
    public DateTime LoadedAt { get; set; }
    public int Count { get; set; }
}

/// <summary>
/// The current state of one alert: one row per (rule, label fingerprint), carrying its current episode.
/// <see cref="Version"/> is a concurrency token, so two replicas deciding from the same old state cannot both win.
/// </summary>
public sealed class AlertRecord
{
    public long Id { get; set; }
    public long RuleId { get; set; }
    public required string RuleName { get; set; }
    public required string Fingerprint { get; set; }
    /// <summary><see cref="AlertStates"/>.</summary>
    public required string State { get; set; }
    public long Episode { get; set; }
    public required string Severity { get; set; }
    public string LabelsJson { get; set; } = "{}";
    public string AnnotationsJson { get; set; } = "{}";
    public double Value { get; set; }
    public DateTime? ActiveSince { get; set; }
    public DateTime? FiringSince { get; set; }
    public DateTime? ResolvedAt { get; set; }
    public DateTime? AcknowledgedAt { get; set; }
    public string? AcknowledgedBy { get; set; }
    public string? AckComment { get; set; }
    public DateTime UpdatedAt { get; set; }
    public long Version { get; set; }
}

/// <summary>
/// Every state change of an alert (the history, and the notification outbox the fan-out reads): unique on
/// (rule, fingerprint, episode, kind), written in the transaction that changes the alert's row.
/// The fan-out sets <see cref="RoutedAt"/> once it has routed the row.
/// </summary>
public sealed class AlertTransitionRecord
{
    public long Id { get; set; }
    public long RuleId { get; set; }
    public required string RuleName { get; set; }
    public required string Fingerprint { get; set; }
    public long Episode { get; set; }
    /// <summary><see cref="AlertTransitionKinds"/>.</summary>
    public required string Kind { get; set; }
    public string LabelsJson { get; set; } = "{}";
    /// <summary>summary, runbook, value, threshold (and rule-specific extras).</summary>
    public string AnnotationsJson { get; set; } = "{}";
    public required string Severity { get; set; }
    public double Value { get; set; }
    public DateTime Time { get; set; }
    public DateTime? RoutedAt { get; set; }
}

/// <summary>A silence: alerts whose labels match every matcher between <see cref="StartsAt"/> and <see cref="EndsAt"/> are not notified.</summary>
public sealed class SilenceRecord
{
    public required string Id { get; set; }
    /// <summary>JSON array of matcher texts ("host=web-1", "mount!=/boot", "alertname=~disk.*").</summary>
    public string MatchersJson { get; set; } = "[]";
    public DateTime StartsAt { get; set; }
    public DateTime EndsAt { get; set; }
    public string Comment { get; set; } = "";
    public required string CreatedBy { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime? ExpiredAt { get; set; }
}

public static class AlertStates
{
    public const string Inactive = "inactive", Pending = "pending", Firing = "firing", Resolved = "resolved";
    public static readonly string[] All = [Pending, Firing, Resolved, Inactive];
}

public static class AlertTransitionKinds
{
    public const string Pending = "pending", Firing = "firing", Resolved = "resolved", Acknowledged = "acknowledged";

    /// <summary>
    /// The outcome of a firing's remediation (a run created, or refused), written once per (rule, fingerprint, episode) by
    /// <see cref="AlertRemediation"/>: the unique index makes it the claim that replicas cannot both win. Not notified.
    /// </summary>
    public const string Remediation = "remediation";
}

sealed class AlertRuleRecordConfiguration : IEntityTypeConfiguration<AlertRuleRecord>
{
    public void Configure(EntityTypeBuilder<AlertRuleRecord> b)
    {
        b.ToTable("alert_rules");
        b.HasKey(r => r.Id);
        b.Property(r => r.Name).HasMaxLength(RuleNames.MaxLength);
        b.Property(r => r.Kind).HasMaxLength(32);
        b.Property(r => r.Severity).HasMaxLength(16);
        b.HasIndex(r => r.Name).IsUnique();
    }
}

sealed class AlertRuleDefaultsMarkerConfiguration : IEntityTypeConfiguration<AlertRuleDefaultsMarker>
{
    public void Configure(EntityTypeBuilder<AlertRuleDefaultsMarker> b)
    {
        b.ToTable("alert_rule_defaults");
        b.HasKey(m => m.Key);
        b.Property(m => m.Key).HasMaxLength(64);
    }
}

sealed class AlertRecordConfiguration : IEntityTypeConfiguration<AlertRecord>
{
    public void Configure(EntityTypeBuilder<AlertRecord> b)
    {
        b.ToTable("alerts");
        b.HasKey(a => a.Id);
        b.Property(a => a.RuleName).HasMaxLength(RuleNames.MaxLength);
        b.Property(a => a.Fingerprint).HasMaxLength(32);
        b.Property(a => a.State).HasMaxLength(16);
        b.Property(a => a.Severity).HasMaxLength(16);
        b.Property(a => a.AcknowledgedBy).HasMaxLength(256);
        b.Property(a => a.AckComment).HasMaxLength(1024);
        b.Property(a => a.Version).IsConcurrencyToken();
        b.HasIndex(a => new { a.RuleId, a.Fingerprint }).IsUnique();
        b.HasIndex(a => a.State);
    }
}

sealed class AlertTransitionRecordConfiguration : IEntityTypeConfiguration<AlertTransitionRecord>
{
    public void Configure(EntityTypeBuilder<AlertTransitionRecord> b)
    {
        b.ToTable("alert_transitions");
        b.HasKey(t => t.Id);
        b.Property(t => t.RuleName).HasMaxLength(RuleNames.MaxLength);
        b.Property(t => t.Fingerprint).HasMaxLength(32);
        b.Property(t => t.Kind).HasMaxLength(16);
        b.Property(t => t.Severity).HasMaxLength(16);
        b.HasIndex(t => new { t.RuleId, t.Fingerprint, t.Episode, t.Kind }).IsUnique();
        b.HasIndex(t => t.RoutedAt);
        b.HasIndex(t => t.Time);
    }
}

sealed class SilenceRecordConfiguration : IEntityTypeConfiguration<SilenceRecord>
{
    public void Configure(EntityTypeBuilder<SilenceRecord> b)
    {
        b.ToTable("alert_silences");
        b.HasKey(s => s.Id);
        b.Property(s => s.Id).HasMaxLength(32);
        b.Property(s => s.Comment).HasMaxLength(1024);
        b.Property(s => s.CreatedBy).HasMaxLength(256);
        b.HasIndex(s => s.EndsAt);
    }
}
