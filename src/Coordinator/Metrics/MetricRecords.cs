using Fleet.Protocol;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Coordinator.Metrics;

/// <summary>One raw sample. Labels are stored canonically ("k=v,k2=v2", sorted) so a series is (agent, name, labels).</summary>
public sealed class MetricSampleRecord
{
    public required string AgentId { get; set; }
    public required string Name { get; set; }
    public string Labels { get; set; } = "";
    public DateTime Time { get; set; }
    public double Value { get; set; }
}

/// <summary>One probe result (health checks: http, tcp, postgres, redis, tls).</summary>
public sealed class ProbeResultRecord
{
    public long Id { get; set; }
    public required string AgentId { get; set; }
    public required string Name { get; set; }
    public string Kind { get; set; } = "";
    public string Target { get; set; } = "";
    public bool Ok { get; set; }
    public double LatencyMs { get; set; }
    public string Reason { get; set; } = "";
    public string ValuesJson { get; set; } = "{}";
    public DateTime Time { get; set; }
}

sealed class MetricSampleRecordConfiguration : IEntityTypeConfiguration<MetricSampleRecord>
{
    public void Configure(EntityTypeBuilder<MetricSampleRecord> b)
    {
        b.ToTable("metric_samples");
        b.HasKey(m => new { m.AgentId, m.Name, m.Labels, m.Time });
        b.Property(m => m.AgentId).HasMaxLength(AgentIds.MaxLength);
        b.Property(m => m.Name).HasMaxLength(200);
        b.Property(m => m.Labels).HasMaxLength(1000);
        b.HasIndex(m => m.Time);
    }
}

sealed class ProbeResultRecordConfiguration : IEntityTypeConfiguration<ProbeResultRecord>
{
    public void Configure(EntityTypeBuilder<ProbeResultRecord> b)
    {
        b.ToTable("probe_results");
        b.HasKey(p => p.Id);
        b.Property(p => p.AgentId).HasMaxLength(AgentIds.MaxLength);
        b.Property(p => p.Name).HasMaxLength(200);
        b.Property(p => p.Kind).HasMaxLength(32);
        b.Property(p => p.Target).HasMaxLength(512);
        b.HasIndex(p => new { p.AgentId, p.Name, p.Time }).IsUnique();
        b.HasIndex(p => p.Time);
    }
}

/// <summary>Min/max/sum/count/last of one series over one bucket (1 minute or 1 hour), kept far longer than raw samples.</summary>
public sealed class MetricRollupRecord
{
    public required string AgentId { get; set; }
    public required string Name { get; set; }
    public string Labels { get; set; } = "";
    /// <summary>Bucket width in seconds: 60 or 3600.</summary>
    public int Resolution { get; set; }
    public DateTime Bucket { get; set; }
    public double Min { get; set; }
    public double Max { get; set; }
    public double Sum { get; set; }
    public long Count { get; set; }
    public double Last { get; set; }
    public DateTime LastTime { get; set; }
}

sealed class MetricRollupRecordConfiguration : IEntityTypeConfiguration<MetricRollupRecord>
{
    public void Configure(EntityTypeBuilder<MetricRollupRecord> b)
    {
        b.ToTable("metric_rollups");
        b.HasKey(m => new { m.AgentId, m.Name, m.Labels, m.Resolution, m.Bucket });
        b.Property(m => m.AgentId).HasMaxLength(AgentIds.MaxLength);
        b.Property(m => m.Name).HasMaxLength(200);
        b.Property(m => m.Labels).HasMaxLength(1000);
        b.HasIndex(m => new { m.Resolution, m.Bucket });
    }
}
