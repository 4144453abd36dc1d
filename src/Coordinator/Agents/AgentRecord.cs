using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

using Fleet.Protocol;

namespace Fleet.Coordinator.Agents;

/// <summary>An agent the coordinator has seen. Liveness comes from presence; this row is the registry.</summary>
public sealed class AgentRecord
{
    public required string Id { get; set; }
    public required string Hostname { get; set; }
    public string MachineId { get; set; } = "";
    public string Os { get; set; } = "";
    public string Kernel { get; set; } = "";
    public string AgentVersion { get; set; } = "";
    public int ProtocolVersion { get; set; }
    /// <summary>JSON object of tag name to value.</summary>
    public string TagsJson { get; set; } = "{}";
    /// <summary>JSON array of the task descriptors advertised in the hello (protobuf JSON).</summary>
    public string TasksJson { get; set; } = "[]";
    public long Epoch { get; set; }
    public DateTime FirstSeen { get; set; }
    public DateTime LastSeen { get; set; }
    /// <summary>The replica that held the most recent stream.</summary>
    public string? Replica { get; set; }
}

/// <summary>Dedupe key of every stored agent batch: (agent, epoch, counter) is stored once.</summary>
public sealed class ReceivedBatch
{
    public required string AgentId { get; set; }
    public long Epoch { get; set; }
    public long Counter { get; set; }
    public DateTime ReceivedAt { get; set; }
}

/// <summary>Something that happened on an agent (started, outbox dropped data, ...).</summary>
public sealed class AgentEventRecord
{
    public long Id { get; set; }
    public required string AgentId { get; set; }
    public long Epoch { get; set; }
    public long Counter { get; set; }
    public int Index { get; set; }
    public DateTime Time { get; set; }
    public required string Kind { get; set; }
    public string Message { get; set; } = "";
    public string AttributesJson { get; set; } = "{}";
}

sealed class AgentRecordConfiguration : IEntityTypeConfiguration<AgentRecord>
{
    public void Configure(EntityTypeBuilder<AgentRecord> b)
    {
        b.ToTable("agents");
        b.HasKey(a => a.Id);
        b.Property(a => a.Id).HasMaxLength(AgentIds.MaxLength);
        b.Property(a => a.Hostname).HasMaxLength(253);
        b.Property(a => a.MachineId).HasMaxLength(128);
        b.Property(a => a.Os).HasMaxLength(256);
        b.Property(a => a.Kernel).HasMaxLength(256);
        b.Property(a => a.AgentVersion).HasMaxLength(64);
        b.Property(a => a.Replica).HasMaxLength(128);
        b.HasIndex(a => a.Hostname);
    }
}

sealed class ReceivedBatchConfiguration : IEntityTypeConfiguration<ReceivedBatch>
{
    public void Configure(EntityTypeBuilder<ReceivedBatch> b)
    {
        b.ToTable("received_batches");
        b.HasKey(r => new { r.AgentId, r.Epoch, r.Counter });
        b.Property(r => r.AgentId).HasMaxLength(AgentIds.MaxLength);
        b.HasIndex(r => r.ReceivedAt);
    }
}

sealed class AgentEventRecordConfiguration : IEntityTypeConfiguration<AgentEventRecord>
{
    public void Configure(EntityTypeBuilder<AgentEventRecord> b)
    {
        b.ToTable("agent_events");
        b.HasKey(e => e.Id);
        b.Property(e => e.AgentId).HasMaxLength(AgentIds.MaxLength);
        b.Property(e => e.Kind).HasMaxLength(128);
        b.HasIndex(e => new { e.AgentId, e.Epoch, e.Counter, e.Index }).IsUnique();
        b.HasIndex(e => new { e.AgentId, e.Time });
    }
}
