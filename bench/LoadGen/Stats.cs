using System.Collections.Concurrent;
using System.Numerics;

namespace Fleet.Bench.LoadGen;

/// <summary>Run-wide counters, updated lock-free by all simulated agents.</summary>
public sealed class Stats(int agents, System.Diagnostics.Stopwatch clock)
{
    long _allWelcomedAtTicks = -1;
    long _connectAttempts;
    long _connectedNow;
    long _agentsEverWelcomed;
    long _welcomes;
    long _heartbeatsSent;
    long _batchesSent;
    long _batchesResent;
    long _acks;
    long _tasksAnswered;
    long _ackUnknownKeys;
    long _rejects;
    long _pendingDropped;
    long _unexpectedMessages;
    long _cleanCloses;
    long _abortedCloses;

    readonly ConcurrentDictionary<string, long> _errors = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, string> _errorSamples = new(StringComparer.Ordinal);

    public LatencyHistogram AckLatency { get; } = new();
    public LatencyHistogram WelcomeLatency { get; } = new();

    public void ConnectAttempt() => Interlocked.Increment(ref _connectAttempts);
    public void Welcomed(bool firstForAgent)
    {
        Interlocked.Increment(ref _welcomes);
        Interlocked.Increment(ref _connectedNow);
        if (firstForAgent && Interlocked.Increment(ref _agentsEverWelcomed) == agents)
        {
            Interlocked.Exchange(ref _allWelcomedAtTicks, clock.Elapsed.Ticks);
        }
    }
    public void Disconnected() => Interlocked.Decrement(ref _connectedNow);
    public void HeartbeatSent() => Interlocked.Increment(ref _heartbeatsSent);
    public void BatchSent(bool resent) => Interlocked.Increment(ref resent ? ref _batchesResent : ref _batchesSent);
    public void Acked() => Interlocked.Increment(ref _acks);
    public void TaskAnswered() => Interlocked.Increment(ref _tasksAnswered);
    public long TasksAnswered => Interlocked.Read(ref _tasksAnswered);
    public void AckUnknownKey() => Interlocked.Increment(ref _ackUnknownKeys);
    public void Rejected() => Interlocked.Increment(ref _rejects);
    public void PendingDropped() => Interlocked.Increment(ref _pendingDropped);
    public void UnexpectedMessage() => Interlocked.Increment(ref _unexpectedMessages);
    public void Closed(bool clean) => Interlocked.Increment(ref clean ? ref _cleanCloses : ref _abortedCloses);

    /// <summary>Counts a failed or ended session under <paramref name="kind"/> (a gRPC status code name or a failure name).</summary>
    public void Error(string kind, string detail)
    {
        _errors.AddOrUpdate(kind, 1, static (_, n) => n + 1);
        _errorSamples.TryAdd(kind, detail.Length > 300 ? detail[..300] : detail);
    }

    public long AgentsEverWelcomed => Interlocked.Read(ref _agentsEverWelcomed);
    /// <summary>Run time at which the last of the N agents got its first Welcome.</summary>
    public TimeSpan? AllWelcomedAt => Interlocked.Read(ref _allWelcomedAtTicks) is var t and >= 0 ? TimeSpan.FromTicks(t) : null;
    public long ConnectedNow => Interlocked.Read(ref _connectedNow);

    public StatsSnapshot Snapshot() => new(
        ConnectAttempts: Interlocked.Read(ref _connectAttempts),
        ConnectedNow: Interlocked.Read(ref _connectedNow),
        AgentsEverWelcomed: Interlocked.Read(ref _agentsEverWelcomed),
        Welcomes: Interlocked.Read(ref _welcomes),
        HeartbeatsSent: Interlocked.Read(ref _heartbeatsSent),
        BatchesSent: Interlocked.Read(ref _batchesSent),
        BatchesResent: Interlocked.Read(ref _batchesResent),
        Acks: Interlocked.Read(ref _acks),
        AckUnknownKeys: Interlocked.Read(ref _ackUnknownKeys),
        Rejects: Interlocked.Read(ref _rejects),
        PendingDropped: Interlocked.Read(ref _pendingDropped),
        UnexpectedMessages: Interlocked.Read(ref _unexpectedMessages),
        CleanCloses: Interlocked.Read(ref _cleanCloses),
        AbortedCloses: Interlocked.Read(ref _abortedCloses),
        Errors: new SortedDictionary<string, long>(_errors, StringComparer.Ordinal),
        AckLatency: AckLatency.Snapshot(),
        WelcomeLatency: WelcomeLatency.Snapshot());

    public IReadOnlyDictionary<string, string> ErrorSamples => new SortedDictionary<string, string>(_errorSamples, StringComparer.Ordinal);
}

public sealed record StatsSnapshot(
    long ConnectAttempts,
    long ConnectedNow,
    long AgentsEverWelcomed,
    long Welcomes,
    long HeartbeatsSent,
    long BatchesSent,
    long BatchesResent,
    long Acks,
    long AckUnknownKeys,
    long Rejects,
    long PendingDropped,
    long UnexpectedMessages,
    long CleanCloses,
    long AbortedCloses,
    SortedDictionary<string, long> Errors,
    long[] AckLatency,
    long[] WelcomeLatency);

/// <summary>
/// Log-linear latency histogram in microseconds: exact below 16 µs, then 16 sub-buckets per power of two
/// (at most ~6% relative error). Lock-free recording; interval percentiles come from subtracting snapshots.
/// </summary>
public sealed class LatencyHistogram
{
    const int SubBuckets = 16;
    const int SubBits = 4;
    public const int BucketCount = 64 * SubBuckets;

    readonly long[] _counts = new long[BucketCount];

    public void Record(TimeSpan latency) => RecordMicros((long)latency.TotalMicroseconds);

    public void RecordMicros(long micros)
    {
        Interlocked.Increment(ref _counts[Index(Math.Max(0, micros))]);
    }

    public long[] Snapshot()
    {
        var copy = new long[BucketCount];
        for (var i = 0; i < BucketCount; i++)
        {
            copy[i] = Interlocked.Read(ref _counts[i]);
        }
        return copy;
    }

    static int Index(long v)
    {
        if (v < SubBuckets)
        {
            return (int)v;
        }
        var msb = 63 - BitOperations.LeadingZeroCount((ulong)v);
        var shift = msb - SubBits;
        var sub = (int)(v >> shift) & (SubBuckets - 1);
        return ((shift + 1) * SubBuckets) + sub;
    }

    /// <summary>Upper bound (inclusive) of the bucket, in microseconds.</summary>
    static long UpperBound(int index)
    {
        if (index < SubBuckets)
        {
            return index;
        }
        var shift = (index / SubBuckets) - 1;
        var sub = index % SubBuckets;
        return ((long)(SubBuckets + sub + 1) << shift) - 1;
    }

    public static long[] Delta(long[] now, long[]? before)
    {
        if (before is null)
        {
            return now;
        }
        var d = new long[BucketCount];
        for (var i = 0; i < BucketCount; i++)
        {
            d[i] = now[i] - before[i];
        }
        return d;
    }

    public static long Count(long[] counts) => counts.Sum();

    /// <summary>Percentile (0..1) in milliseconds, or null without samples.</summary>
    public static double? PercentileMs(long[] counts, double p)
    {
        var total = Count(counts);
        if (total == 0)
        {
            return null;
        }
        var target = Math.Max(1, (long)Math.Ceiling(p * total));
        long seen = 0;
        for (var i = 0; i < BucketCount; i++)
        {
            seen += counts[i];
            if (seen >= target)
            {
                return UpperBound(i) / 1000.0;
            }
        }
        return UpperBound(BucketCount - 1) / 1000.0;
    }
}
