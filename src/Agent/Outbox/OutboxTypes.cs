namespace Fleet.Agent.Outbox;

/// <summary>Where and how much the durable outbox may store.</summary>
public sealed class OutboxOptions
{
    /// <summary>Directory holding the segment files, the state file and the acknowledgement journal, e.g. <c>{stateDir}/outbox</c>.</summary>
    public required string Directory { get; init; }

    /// <summary>
    /// Bound on the bytes of segment data on disk. When an append would exceed it, the oldest segment is dropped
    /// (its unacknowledged records are counted in <see cref="DurableOutbox.DroppedRecords"/>).
    /// </summary>
    public long MaxBytes { get; init; } = 256L * 1024 * 1024;

    /// <summary>
    /// A new segment file is started once the current one reaches this size. The effective value is capped at
    /// <c>MaxBytes / 8</c> (so that dropping the oldest segment never throws away more than an eighth of the bound)
    /// and at 1 GiB.
    /// </summary>
    public long SegmentBytes { get; init; } = 8L * 1024 * 1024;
}

/// <summary>The coordinator's dedupe key of a record: a random per-outbox epoch and a counter strictly increasing within it.</summary>
public readonly record struct OutboxKey(ulong Epoch, ulong Counter);

/// <summary>A record handed out by <see cref="DurableOutbox.ReadNextAsync"/>.</summary>
public sealed record OutboxRecord(OutboxKey Key, ReadOnlyMemory<byte> Payload)
{
    /// <summary>The rented array behind <see cref="Payload"/> (<see cref="DurableOutbox.ReadNextPooledAsync"/>), until
    /// <see cref="DurableOutbox.Release"/>.</summary>
    internal byte[]? PooledBuffer;
}

public enum AppendStatus
{
    /// <summary>The record is on disk (fsync'ed) and will be handed out until acknowledged.</summary>
    Appended,

    /// <summary>The record was not stored (too large, disk full, I/O error); <see cref="AppendResult.Reason"/> says why.</summary>
    Dropped,
}

/// <summary>Outcome of <see cref="DurableOutbox.AppendAsync"/>. <see cref="Key"/> is meaningful only when <see cref="Status"/> is <see cref="AppendStatus.Appended"/>.</summary>
public readonly record struct AppendResult(AppendStatus Status, OutboxKey Key, string? Reason)
{
    internal static AppendResult Dropped(string reason) => new(AppendStatus.Dropped, default, reason);
}
