using System.Buffers;
using Fleet.Agent.Outbox;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Agent.Logs;

/// <summary>
/// Batches entries by size and time into <c>Batch{Logs}</c> records in the durable outbox and moves the checkpoints
/// once the coordinator acknowledges a batch (<see cref="DurableOutbox.Acknowledged"/>). A batch the outbox will not
/// store is counted and the checkpoint moves past it (the outbox counts the loss too), so one bad batch never blocks
/// a source.
/// </summary>
public sealed partial class LogShipper : IDisposable
{
    /// <summary>Field tag and length prefix of an entry inside a LogBatch.</summary>
    const int EntryOverhead = 6;

    readonly LogSettings settings;
    readonly DurableOutbox outbox;
    readonly LogCheckpoints checkpoints;
    readonly LogCounters counters;
    readonly TimeProvider time;
    readonly ILogger logger;

    readonly Lock gate = new();
    List<(LogEntry Entry, CheckpointMark Mark, int Size)> pending = [];
    /// <summary>The list <see cref="FlushAsync"/> took last time, emptied, for <see cref="pending"/> to swap with: a
    /// new list per flush regrew to thousands of entries each time, its larger arrays on the large-object heap.</summary>
    List<(LogEntry Entry, CheckpointMark Mark, int Size)>? spare;
    long pendingBytes;
    long oldestPending;
    readonly Dictionary<OutboxKey, (long Sequence, List<CheckpointMark> Marks)> inFlight = [];
    readonly List<(long Sequence, List<CheckpointMark> Marks)> acknowledged = [];
    long nextSequence;
    const int MaxUnclaimedAcks = 256;
    readonly HashSet<OutboxKey> unclaimedAcks = [];
    readonly Queue<OutboxKey> unclaimedOrder = new();
    readonly SemaphoreSlim wake = new(0, 1);
    TaskCompletionSource? room;

    /// <summary>Bytes queued but not yet written to the outbox above which readers wait (<see cref="WaitForRoomAsync"/>).</summary>
    long MaxQueuedBytes => settings.BatchMaxBytes * 4L;

    /// <summary>True while the queue is at its bound: a reader should stop reading and wait for room, so a burst is read as fast as it is shipped, not into memory.</summary>
    public bool Saturated { get { lock (gate) return pendingBytes >= MaxQueuedBytes; } }

    /// <summary>Completes once the queue is below its bound (at once if it is).</summary>
    public Task WaitForRoomAsync(CancellationToken cancellationToken)
    {
        lock (gate)
        {
            if (pendingBytes < MaxQueuedBytes) return Task.CompletedTask;
            room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return room.Task.WaitAsync(cancellationToken);
        }
    }

    readonly Func<bool> coordinatorConnected;
    CancellationToken stopping;

    /// <param name="coordinatorConnected">
    /// Whether the agent holds a stream to the coordinator now. While it does and the outbox is over half its bound,
    /// the coordinator is only slow: the shipper waits for its acks (and the readers for the shipper) instead of making
    /// the outbox drop its oldest batches, so the lines wait in their files. While it does not (an outage), the outbox
    /// buffers up to its bound and then drops the oldest, counted.
    /// </param>
    public LogShipper(LogSettings settings, DurableOutbox outbox, LogCheckpoints checkpoints, LogCounters counters, TimeProvider time, ILogger logger, Func<bool>? coordinatorConnected = null)
    {
        this.coordinatorConnected = coordinatorConnected ?? (static () => false);
        this.settings = settings;
        this.outbox = outbox;
        this.checkpoints = checkpoints;
        this.counters = counters;
        this.time = time;
        this.logger = logger;
        outbox.Acknowledged += OnAcknowledged;
        outbox.Discarded += OnAcknowledged; // dropped to stay within the bound: lost, so its checkpoint moves on as after an ack
    }

    /// <summary>Queues an entry; <paramref name="mark"/> is where its source may resume once it is acknowledged.</summary>
    public void Add(LogEntry entry, CheckpointMark mark)
    {
        var full = false;
        var size = entry.CalculateSize() + EntryOverhead; // once: protobuf does not cache it, and it walks every string
        lock (gate)
        {
            if (pending.Count == 0) oldestPending = time.GetTimestamp();
            pending.Add((entry, mark, size));
            pendingBytes += size;
            full = pendingBytes >= settings.BatchMaxBytes;
        }
        if (full) Wake();
    }

    void OnAcknowledged(OutboxKey key)
    {
        lock (gate)
        {
            if (!inFlight.Remove(key, out var done))
            {
                // Another pipeline's record, or one of ours whose append has not returned yet: remember a few.
                if (unclaimedAcks.Add(key)) unclaimedOrder.Enqueue(key);
                if (unclaimedOrder.Count > MaxUnclaimedAcks) unclaimedAcks.Remove(unclaimedOrder.Dequeue());
                return;
            }
            acknowledged.Add(done);
        }
        Wake();
    }

    void Wake()
    {
        if (wake.CurrentCount == 0)
        {
            try { wake.Release(); } catch (SemaphoreFullException) { }
        }
    }

    /// <summary>Flushes by size and time and persists acknowledged checkpoints until cancelled, then flushes what is left.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        stopping = cancellationToken;
        var tick = TimeSpan.FromMilliseconds(Math.Clamp(settings.BatchMaxDelay.TotalMilliseconds / 4, 10, 250));
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await wake.WaitAsync(tick, cancellationToken);
                bool due;
                lock (gate) due = pending.Count > 0 && (pendingBytes >= settings.BatchMaxBytes || time.GetElapsedTime(oldestPending) >= settings.BatchMaxDelay);
                if (due) await FlushAsync(CancellationToken.None);
                PersistAcknowledged();
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
        await FlushAsync(CancellationToken.None);
        PersistAcknowledged();
    }

    /// <summary>Moves the checkpoints of acknowledged batches and writes them.</summary>
    public void PersistAcknowledged()
    {
        List<(long Sequence, List<CheckpointMark> Marks)> done;
        lock (gate)
        {
            if (acknowledged.Count == 0) { checkpoints.Save(); return; }
            done = [.. acknowledged];
            acknowledged.Clear();
        }
        foreach (var (sequence, marks) in done) checkpoints.Apply(marks, sequence);
        checkpoints.Save();
    }

    /// <summary>Writes everything queued to the outbox as batches of at most <see cref="LogSettings.BatchMaxBytes"/>.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken)
    {
        List<(LogEntry Entry, CheckpointMark Mark, int Size)> taken;
        lock (gate)
        {
            if (pending.Count == 0) return;
            (taken, pending) = (pending, spare ?? []);
            spare = null;
            pendingBytes = 0;
            room?.TrySetResult();
            room = null;
        }
        // Every batch of this flush is handed to the outbox before the first is awaited, so they share one group
        // commit (one fsync) instead of one fsync each; the outbox keeps them in this order.
        var appends = new List<(int Entries, Dictionary<(string, string), CheckpointMark> Marks, long Sequence, byte[] Buffer, Task<AppendResult> Append)>();
        try
        {
            var i = 0;
            while (i < taken.Count)
            {
                var batch = new LogBatch();
                var marks = new Dictionary<(string, string), CheckpointMark>();
                var size = 0;
                for (; i < taken.Count; i++)
                {
                    var (entry, mark, entrySize) = taken[i];
                    if (size > 0 && size + entrySize > settings.BatchMaxBytes) break;
                    batch.Entries.Add(entry);
                    marks[mark.Key] = mark;
                    size += entrySize;
                }
                var record = new Batch { CreatedAt = Timestamp.FromDateTimeOffset(time.GetUtcNow()), Logs = batch };
                long sequence;
                lock (gate) sequence = ++nextSequence;
                await WaitWhileTheCoordinatorIsBehindAsync();
                // A rented buffer, not ToByteArray: a batch is a large object, and one per batch made the GC collect
                // generation 2 over and over. The outbox does not keep the buffer once the append has returned.
                var length = record.CalculateSize();
                var buffer = ArrayPool<byte>.Shared.Rent(length);
                record.WriteTo(buffer.AsSpan(0, length));
                // Not awaited yet (an async method: a closed outbox faults the task, awaited below).
                var append = outbox.AppendAsync(buffer.AsMemory(0, length), cancellationToken).AsTask();
                appends.Add((batch.Entries.Count, marks, sequence, buffer, append));
            }
            System.Runtime.ExceptionServices.ExceptionDispatchInfo? failed = null;
            foreach (var (entries, marks, sequence, _, append) in appends)
            {
                AppendResult result;
                try { result = await append; }
                catch (ObjectDisposedException)
                {
                    // Shutting down: not written, so the checkpoint stays and the entries are read again at the next start.
                    LogNotWritten(entries);
                    continue;
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // The appends after it may have been written: they are registered below before this one is rethrown,
                    // so their acks move the checkpoint.
                    failed ??= System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex);
                    continue;
                }
                if (result.Status == AppendStatus.Dropped)
                {
                    counters.Dropped();
                    LogDropped(entries, result.Reason);
                    checkpoints.Apply(marks.Values, sequence);
                    continue;
                }
                lock (gate)
                {
                    // The record is readable as soon as it is durable, so its ack can (rarely) arrive before this line.
                    if (unclaimedAcks.Contains(result.Key)) acknowledged.Add((sequence, [.. marks.Values]));
                    else inFlight[result.Key] = (sequence, [.. marks.Values]);
                }
                counters.Shipped(entries);
            }
            failed?.Throw();
        }
        finally
        {
            foreach (var append in appends)
            {
                // Returned only once the outbox is done with it (an append still running keeps its buffer).
                if (append.Append.IsCompleted) ArrayPool<byte>.Shared.Return(append.Buffer);
            }
        }
        taken.Clear();
        lock (gate) spare = taken;
    }

    /// <summary>Connected, but the outbox is over half its bound: wait for acks (not at shutdown, which must not hang).</summary>
    async Task WaitWhileTheCoordinatorIsBehindAsync()
    {
        var waited = false;
        while (!stopping.IsCancellationRequested && outbox.PendingBytes > outbox.MaxBytes / 2 && coordinatorConnected())
        {
            if (!waited) LogBehind(outbox.PendingBytes, outbox.MaxBytes);
            waited = true;
            try { await Task.Delay(TimeSpan.FromMilliseconds(100), time, stopping); }
            catch (OperationCanceledException) { return; }
        }
    }

    public void Dispose()
    {
        outbox.Acknowledged -= OnAcknowledged;
        outbox.Discarded -= OnAcknowledged;
        wake.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Log batch of {Entries} entries dropped by the outbox ({Reason}); the checkpoint moves past it")]
    partial void LogDropped(int entries, string? reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "The coordinator is behind ({Pending} of the outbox's {MaxBytes} bytes unacknowledged): log reading waits for its acks")]
    partial void LogBehind(long pending, long maxBytes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Log batch of {Entries} entries not written (outbox closed); it is read again at the next start")]
    partial void LogNotWritten(int entries);
}
