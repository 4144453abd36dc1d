using Fleet.Protocol;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Coordinator.Runs;

/// <summary>
/// A task sent to a set of hosts. <see cref="ParametersJson"/> holds the real values, secrets included: an offline
/// host may be dispatched to minutes later. Secret values never leave the coordinator except in the Dispatch.
/// </summary>
public sealed class RunRecord
{
    public required string Id { get; set; }
    public required string Task { get; set; }
    public string ParametersJson { get; set; } = "{}";
    /// <summary>JSON array of the parameter names whose schema says secret (shown as "***").</summary>
    public string SecretParametersJson { get; set; } = "[]";
    public string HostsJson { get; set; } = "[]";
    public string TagsJson { get; set; } = "[]";
    public string MaxConcurrency { get; set; } = "";
    /// <summary>The resolved limit (a percentage of the hosts rounded up, at least 1); null: no limit.</summary>
    public int? MaxConcurrencyLimit { get; set; }
    public string MaxErrors { get; set; } = "";
    /// <summary>The resolved limit (a percentage of the hosts rounded down); null: no limit.</summary>
    public int? MaxErrorsLimit { get; set; }
    public int Canary { get; set; }
    public string DeliveryTimeout { get; set; } = "";
    public long DeliveryTimeoutMs { get; set; }
    public string ExecutionTimeout { get; set; } = "";
    /// <summary>The execution timeout the coordinator falls back on (explicit or the task's default).</summary>
    public long ExecutionTimeoutMs { get; set; }
    public bool DryRun { get; set; }
    public bool Destructive { get; set; }
    public string? ClientToken { get; set; }
    public required string CreatedBy { get; set; }
    public DateTime CreatedAt { get; set; }
    public RunStatus Status { get; set; } = RunStatus.InProgress;
    public string StatusReason { get; set; } = "";
    public bool CancelRequested { get; set; }
    public DateTime? FinishedAt { get; set; }
    public string? RetryOf { get; set; }
    /// <summary>The schedule occurrence this run is a step of (its id is then derived from the occurrence, see Schedules.ScheduleIds).</summary>
    public string? OccurrenceId { get; set; }
}

/// <summary>One host's part of a run; id "{runId}.{agentId}", which the agent journals before executing.</summary>
public sealed class InvocationRecord
{
    public required string Id { get; set; }
    public required string RunId { get; set; }
    public required string AgentId { get; set; }
    public required string Hostname { get; set; }
    /// <summary>Position in the run's host order (canaries first).</summary>
    public int Ordinal { get; set; }
    public bool Canary { get; set; }
    public InvocationState State { get; set; } = InvocationState.Pending;
    public DateTime CreatedAt { get; set; }
    public DateTime? DispatchedAt { get; set; }
    public DateTime? StartedAt { get; set; }
    public DateTime? FinishedAt { get; set; }
    public DateTime UpdatedAt { get; set; }
    /// <summary>The agent reported its outcome (a TaskFinished): final, never overwritten.</summary>
    public bool ResultReported { get; set; }
    public DateTime? CancelRequestedAt { get; set; }
    public int ExitCode { get; set; }
    public string Summary { get; set; } = "";
    public string FiguresJson { get; set; } = "{}";
    public string Error { get; set; } = "";
    public string FailureKind { get; set; } = "";
    public string ResultJson { get; set; } = "";
    public long OutputBytes { get; set; }
    public byte[] OutputHead { get; set; } = [];
    public byte[] OutputTail { get; set; } = [];
    public string? OutputBlobKey { get; set; }
    /// <summary>Output assembled (into the blob store when there was any) and staging chunks deleted.</summary>
    public bool OutputFinalized { get; set; }
    public int DispatchAttempts { get; set; }
}

public sealed class InvocationTransitionRecord
{
    public long Id { get; set; }
    public required string InvocationId { get; set; }
    public InvocationState State { get; set; }
    public DateTime Time { get; set; }
    public string Detail { get; set; } = "";
}

/// <summary>A piece of an invocation's output, staged until the whole output is assembled into a blob.</summary>
public sealed class InvocationOutputChunk
{
    public required string InvocationId { get; set; }
    public long Offset { get; set; }
    public byte[] Data { get; set; } = [];
}

static class InvocationStates
{
    public static readonly InvocationState[] Final =
    [
        InvocationState.Succeeded, InvocationState.Failed, InvocationState.TimedOut, InvocationState.Cancelled,
        InvocationState.DeliveryTimedOut, InvocationState.Skipped,
    ];

    public static readonly InvocationState[] Errors = [InvocationState.Failed, InvocationState.TimedOut, InvocationState.DeliveryTimedOut];

    public static bool IsFinal(InvocationState state) => Array.IndexOf(Final, state) >= 0;

    public static string InvocationId(string runId, string agentId) => $"{runId}.{agentId}";
}

sealed class RunRecordConfiguration : IEntityTypeConfiguration<RunRecord>
{
    public void Configure(EntityTypeBuilder<RunRecord> b)
    {
        b.ToTable("runs");
        b.HasKey(r => r.Id);
        b.Property(r => r.Id).HasMaxLength(RunIds.MaxLength);
        b.Property(r => r.Task).HasMaxLength(128);
        b.Property(r => r.MaxConcurrency).HasMaxLength(16);
        b.Property(r => r.MaxErrors).HasMaxLength(16);
        b.Property(r => r.DeliveryTimeout).HasMaxLength(32);
        b.Property(r => r.ExecutionTimeout).HasMaxLength(32);
        b.Property(r => r.ClientToken).HasMaxLength(128);
        b.Property(r => r.CreatedBy).HasMaxLength(256);
        b.Property(r => r.StatusReason).HasMaxLength(512);
        b.Property(r => r.RetryOf).HasMaxLength(RunIds.MaxLength);
        b.Property(r => r.OccurrenceId).HasMaxLength(RunIds.MaxLength);
        b.HasIndex(r => r.OccurrenceId);
        b.HasIndex(r => r.ClientToken).IsUnique();
        b.HasIndex(r => r.Status);
        b.HasIndex(r => new { r.Task, r.Id });
        b.HasIndex(r => new { r.Task, r.FinishedAt }); // checklist evidence: a task's successful runs in a period, newest first
    }
}

sealed class InvocationRecordConfiguration : IEntityTypeConfiguration<InvocationRecord>
{
    public void Configure(EntityTypeBuilder<InvocationRecord> b)
    {
        b.ToTable("invocations");
        b.HasKey(i => i.Id);
        b.Property(i => i.Id).HasMaxLength(RunIds.MaxLength + 1 + AgentIds.MaxLength);
        b.Property(i => i.RunId).HasMaxLength(RunIds.MaxLength);
        b.Property(i => i.AgentId).HasMaxLength(AgentIds.MaxLength);
        b.Property(i => i.Hostname).HasMaxLength(253);
        b.Property(i => i.FailureKind).HasMaxLength(64);
        b.Property(i => i.OutputBlobKey).HasMaxLength(512);
        b.HasOne<RunRecord>().WithMany().HasForeignKey(i => i.RunId).OnDelete(DeleteBehavior.Cascade);
        b.HasIndex(i => new { i.RunId, i.State, i.Ordinal });
        b.HasIndex(i => new { i.AgentId, i.State });
        b.HasIndex(i => new { i.OutputFinalized, i.State });
    }
}

sealed class InvocationTransitionRecordConfiguration : IEntityTypeConfiguration<InvocationTransitionRecord>
{
    public void Configure(EntityTypeBuilder<InvocationTransitionRecord> b)
    {
        b.ToTable("invocation_transitions");
        b.HasKey(t => t.Id);
        b.Property(t => t.InvocationId).HasMaxLength(RunIds.MaxLength + 1 + AgentIds.MaxLength);
        b.Property(t => t.Detail).HasMaxLength(1024);
        b.HasOne<InvocationRecord>().WithMany().HasForeignKey(t => t.InvocationId).OnDelete(DeleteBehavior.Cascade);
        b.HasIndex(t => new { t.InvocationId, t.Id });
    }
}

sealed class InvocationOutputChunkConfiguration : IEntityTypeConfiguration<InvocationOutputChunk>
{
    public void Configure(EntityTypeBuilder<InvocationOutputChunk> b)
    {
        b.ToTable("invocation_output");
        b.HasKey(c => new { c.InvocationId, c.Offset });
        b.Property(c => c.InvocationId).HasMaxLength(RunIds.MaxLength + 1 + AgentIds.MaxLength);
        b.HasOne<InvocationRecord>().WithMany().HasForeignKey(c => c.InvocationId).OnDelete(DeleteBehavior.Cascade);
    }
}

/// <summary>Run ids: "r-" + 10 characters of milliseconds since 1970 + 10 random characters (Crockford base32), so ids sort by creation time.</summary>
public static class RunIds
{
    public const int MaxLength = 32;
    const string Alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
    static long lastMs;

    /// <summary>A new id; within this process strictly increasing (the time part never repeats), across replicas sorted to the millisecond.</summary>
    public static string New(DateTimeOffset now)
    {
        Span<char> id = stackalloc char[22];
        id[0] = 'r';
        id[1] = '-';
        long ms, last;
        do
        {
            last = Interlocked.Read(ref lastMs);
            ms = Math.Max(now.ToUnixTimeMilliseconds(), last + 1);
        }
        while (Interlocked.CompareExchange(ref lastMs, ms, last) != last);
        for (var i = 11; i >= 2; i--, ms >>= 5) id[i] = Alphabet[(int)(ms & 31)];
        Span<byte> random = stackalloc byte[10];
        System.Security.Cryptography.RandomNumberGenerator.Fill(random);
        for (var i = 0; i < 10; i++) id[12 + i] = Alphabet[random[i] & 31];
        return new string(id);
    }
}
