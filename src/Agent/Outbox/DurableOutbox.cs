using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Fleet.Agent.Outbox;

/// <summary>
/// The agent's single durable on-disk outbox: append-only, checksummed segment files plus a small in-memory index.
/// <para>
/// Writers: <see cref="AppendAsync"/> may be called concurrently. Appends are group-committed: whoever holds the write
/// gate writes every queued record and makes them durable with one fsync per touched segment, so concurrent producers
/// share fsyncs. A record is visible to <see cref="ReadNextAsync"/> only once it is durable.
/// </para>
/// <para>
/// Reader: one sender calls <see cref="ReadNextAsync"/>, <see cref="Acknowledge"/>, <see cref="Reject"/> and
/// <see cref="Rewind"/>. Records are handed out in append order (key order within an epoch; records recovered from an
/// earlier epoch come first).
/// </para>
/// <para>
/// Files in <see cref="OutboxOptions.Directory"/>: <c>NNNNNNNNNNNNNNNNNNNN.seg</c> (see <see cref="SegmentFormat"/>),
/// <c>outbox.state</c> (epoch + reserved counter mark, see <see cref="OutboxStateFile"/>) and <c>outbox.acks</c>
/// (keys acknowledged in segments that still exist, see <see cref="AckJournal"/>).
/// </para>
/// </summary>
public sealed class DurableOutbox : IAsyncDisposable
{
    /// <summary>Counters reserved (and fsync'ed in the state file) at a time.</summary>
    internal const ulong CounterBlock = 10_000;

    private const string SegmentExtension = ".seg";
    private const string StateFileName = "outbox.state";
    private const string JournalFileName = "outbox.acks";
    private const int MaxBatchRecords = 1024;
    private const long MaxBatchBytes = 4L * 1024 * 1024;
    private const long MinJournalCompaction = 64 * 1024;
    private static readonly TimeSpan FailureLogInterval = TimeSpan.FromSeconds(30);

    private readonly string _directory;
    private readonly long _maxBytes;
    private readonly long _segmentBytes;
    private readonly ILogger<DurableOutbox> _logger;
    private readonly TimeProvider _time;
    private readonly OutboxStateFile _state;
    private readonly AckJournal _journal;

    // ---- Index and reader state: guarded by _sync (never held across I/O that can block for long, except small reads). ----
    private readonly Lock _sync = new();
    private readonly List<Segment> _segments = [];
    private Segment? _active; // written by the writer under _sync, read by both
    private Segment? _readerSegment;
    private long _cursorSegment;
    private int _cursorIndex;
    private TaskCompletionSource? _readerSignal;
    private long _diskBytes;
    private long _pendingRecords;
    private long _pendingBytes;
    private long _droppedRecords;
    private long _liveDoneRecords;
    private long _journalCompactAt = MinJournalCompaction;
    private bool _disposed;

    // ---- Writer state: only touched by the holder of _gate. ----
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ConcurrentQueue<PendingAppend> _queue = new();
    private readonly List<PendingAppend> _batch = [];
    private readonly List<InFlightRecord> _inFlight = [];
    private readonly List<(Segment Segment, long LengthBefore)> _touched = [];
    private readonly byte[] _header = new byte[SegmentFormat.HeaderSize];
    private readonly ReadOnlyMemory<byte>[] _frameParts = new ReadOnlyMemory<byte>[2];
    private long _nextSegmentId;
    private ulong _nextCounter;
    private long _lastFailureLog;
    private int _suppressedFailures;
    private int _disposeStarted;

    private DurableOutbox(OutboxOptions options, string directory, ILogger<DurableOutbox> logger, TimeProvider time, OutboxStateFile state)
    {
        _directory = directory;
        _maxBytes = options.MaxBytes;
        _segmentBytes = Math.Min(Math.Min(options.SegmentBytes, Math.Max(options.MaxBytes / 8, 1)), 1L << 30);
        _logger = logger;
        _time = time;
        _state = state;
        _journal = new AckJournal(Path.Combine(directory, JournalFileName), logger);
    }

    /// <summary>Creates the directory if needed and recovers what is on disk. Throws only if the directory or the state file cannot be used at all (e.g. another process holds it).</summary>
    public static DurableOutbox Open(OutboxOptions options, ILogger<DurableOutbox> logger, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.Directory);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxBytes, SegmentFormat.HeaderSize + 1L);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.SegmentBytes, 1L);

        var directory = Path.GetFullPath(options.Directory);
        Directory.CreateDirectory(directory);
        var segmentFiles = ListSegmentFiles(directory);
        var state = OutboxStateFile.Open(Path.Combine(directory, StateFileName), logger, segmentFiles.Count > 0);
        try
        {
            var outbox = new DurableOutbox(options, directory, logger, time ?? TimeProvider.System, state);
            outbox.Recover(segmentFiles);
            return outbox;
        }
        catch
        {
            state.Dispose();
            throw;
        }
    }

    /// <summary>Random per-outbox id, persisted; a new one whenever the state file was absent or corrupt.</summary>
    public ulong Epoch => _state.Epoch;

    /// <summary>Durable records not yet acknowledged or rejected (including those handed out and awaiting an answer).</summary>
    public long PendingRecords { get { lock (_sync) return _pendingRecords; } }

    /// <summary>Payload bytes of <see cref="PendingRecords"/>.</summary>
    public long PendingBytes { get { lock (_sync) return _pendingBytes; } }

    /// <summary>The bound on the outbox's size on disk; past it the oldest records are dropped.</summary>
    public long MaxBytes => _maxBytes;

    /// <summary>
    /// Records lost since open: appends that returned <see cref="AppendStatus.Dropped"/>, unacknowledged records dropped
    /// to stay within <see cref="OutboxOptions.MaxBytes"/>, rejected records and records lost to on-disk corruption.
    /// </summary>
    public long DroppedRecords { get { lock (_sync) return _droppedRecords; } }

    /// <summary>Bytes of segment data on disk (what <see cref="OutboxOptions.MaxBytes"/> bounds).</summary>
    public long DiskBytes { get { lock (_sync) return _diskBytes; } }

    /// <summary>
    /// Appends a record and returns once it is fsync'ed (<see cref="AppendStatus.Appended"/>), or
    /// <see cref="AppendStatus.Dropped"/> with a reason if it could not be stored (too large, disk full, I/O error).
    /// Never throws for I/O problems. Cancellation only takes effect while the record is still waiting for its turn.
    /// </summary>
    public async ValueTask<AppendResult> AppendAsync(ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposeStarted) != 0, this);
        ct.ThrowIfCancellationRequested();

        var frameLength = (long)SegmentFormat.HeaderSize + payload.Length;
        if (frameLength > _maxBytes || payload.Length > SegmentFormat.MaxPayload)
        {
            var reason = string.Create(CultureInfo.InvariantCulture,
                $"record of {payload.Length} bytes ({frameLength} bytes framed) exceeds the outbox bound of {_maxBytes} bytes");
            lock (_sync) _droppedRecords++;
            _logger.LogWarning("Outbox dropped a record of {Bytes} bytes: larger than the {MaxBytes}-byte bound", payload.Length, _maxBytes);
            return AppendResult.Dropped(reason);
        }

        var op = new PendingAppend(payload);
        _queue.Enqueue(op);
        var acquired = false;
        try
        {
            await _gate.WaitAsync(ct);
            acquired = true;
        }
        catch (OperationCanceledException) when (op.TryCancel())
        {
            throw; // never taken by a writer: nothing was written
        }
        catch (OperationCanceledException)
        {
            // A writer already took the record: wait for its outcome below.
        }
        if (!acquired)
            await _gate.WaitAsync(CancellationToken.None);
        try
        {
            while (!op.Completed)
                ProcessBatch();
        }
        finally
        {
            _gate.Release();
        }
        if (op.Error is { } error)
            throw error;
        return op.Result;
    }

    /// <summary>
    /// Returns the next durable record not yet handed out since open or the last <see cref="Rewind"/>, in order,
    /// waiting (without polling) until one exists. The payload is read back from disk.
    /// </summary>
    public ValueTask<OutboxRecord> ReadNextAsync(CancellationToken ct) => ReadNextAsync(pooled: false, ct);

    /// <summary>
    /// As <see cref="ReadNextAsync(CancellationToken)"/>, but the payload is read into a buffer rented from
    /// <see cref="System.Buffers.ArrayPool{T}.Shared"/>, which the caller hands back with <see cref="Release"/> once it
    /// no longer reads the payload. For the sender: one large array per record made the GC collect over and over.
    /// </summary>
    public ValueTask<OutboxRecord> ReadNextPooledAsync(CancellationToken ct) => ReadNextAsync(pooled: true, ct);

    /// <summary>Returns the buffer of a record from <see cref="ReadNextPooledAsync"/> to the pool (once; the record's
    /// payload must not be read afterwards). Does nothing for other records.</summary>
    public static void Release(OutboxRecord record)
    {
        if (Interlocked.Exchange(ref record.PooledBuffer, null) is { } buffer)
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
    }

    private async ValueTask<OutboxRecord> ReadNextAsync(bool pooled, CancellationToken ct)
    {
        while (true)
        {
            Task signal;
            lock (_sync)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (TryTakeNext(pooled, out var record))
                    return record;
                _readerSignal ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                signal = _readerSignal.Task;
            }
            await signal.WaitAsync(ct);
        }
    }

    /// <summary>On reconnect: every unacknowledged record will be handed out again, in order.</summary>
    public void Rewind()
    {
        lock (_sync)
        {
            if (_disposed) return;
            _cursorSegment = 0;
            _cursorIndex = 0;
            SignalReader();
        }
    }

    /// <summary>The coordinator stored the record: remove it. Idempotent; unknown or old keys are ignored.</summary>
    public void Acknowledge(OutboxKey key)
    {
        if (Complete(key, rejectReason: null))
            Acknowledged?.Invoke(key);
    }

    /// <summary>
    /// Raised with the key once an acknowledgement has been recorded (journaled, or the segment deleted), outside the
    /// outbox's lock, on the thread that called <see cref="Acknowledge"/>; once per key (repeated acks are ignored).
    /// Handlers must be quick and must not throw.
    /// </summary>
    public event Action<OutboxKey>? Acknowledged;

    /// <summary>
    /// Raised with the key of each unacknowledged record removed to keep the outbox within its bound (counted in
    /// <see cref="DroppedRecords"/>), outside the outbox's lock, so a producer can forget what it was waiting for.
    /// Handlers must be quick and must not throw.
    /// </summary>
    public event Action<OutboxKey>? Discarded;

    /// <summary>The coordinator can never store the record: remove it and count it as dropped.</summary>
    public void Reject(OutboxKey key, string reason) => Complete(key, reason ?? string.Empty);

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposeStarted, 1) != 0)
            return;
        await _gate.WaitAsync();
        try
        {
            while (_queue.TryDequeue(out var op))
            {
                if (op.TryTake())
                    op.Fail(new ObjectDisposedException(nameof(DurableOutbox)));
            }
            lock (_sync)
            {
                _disposed = true;
                _readerSignal?.TrySetException(new ObjectDisposedException(nameof(DurableOutbox)));
                _readerSignal = null;
                if (_active is { } active)
                {
                    active.Sealed = true;
                    _active = null;
                }
                _readerSegment = null;
                for (var i = _segments.Count - 1; i >= 0; i--)
                {
                    var segment = _segments[i];
                    if (segment.PendingCount == 0 && segment.InFlight == 0)
                        RemoveSegment(segment);
                    else
                        CloseHandle(segment);
                }
                _journal.Flush();
                _journal.Dispose();
                _state.Dispose();
            }
        }
        finally
        {
            // Not disposed: appenders still waiting on the gate must be able to acquire it and observe their failure.
            _gate.Release();
        }
    }

    // =====================================================================================================
    // Recovery
    // =====================================================================================================

    private static List<(long Id, string Path)> ListSegmentFiles(string directory)
    {
        var files = new List<(long, string)>();
        foreach (var path in Directory.EnumerateFiles(directory, "*" + SegmentExtension))
        {
            var name = Path.GetFileNameWithoutExtension(path);
            if (name.Length == 20 && long.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id > 0)
                files.Add((id, path));
        }
        files.Sort((a, b) => a.Item1.CompareTo(b.Item1));
        return files;
    }

    private string SegmentPath(long id) =>
        Path.Combine(_directory, id.ToString("D20", CultureInfo.InvariantCulture) + SegmentExtension);

    private void Recover(List<(long Id, string Path)> files)
    {
        var buffer = new byte[64 * 1024];
        long maxId = 0;
        ulong maxCounterThisEpoch = 0;
        foreach (var (id, path) in files)
        {
            maxId = Math.Max(maxId, id);
            var segment = new Segment(id, path) { Sealed = true };
            try
            {
                segment.Handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
                ScanSegment(segment, buffer);
            }
            catch (Exception ex) when (IsIoError(ex))
            {
                _logger.LogError(ex, "Could not read outbox segment {Path}; leaving it in place and skipping it", path);
                CloseHandle(segment);
                continue;
            }
            CloseHandle(segment);
            if (segment.Count == 0)
            {
                TryDelete(path);
                continue;
            }
            segment.TrimEntries();
            _segments.Add(segment);
            _diskBytes += segment.Length;
            _pendingRecords += segment.PendingCount;
            _pendingBytes += segment.PendingBytes;
            if (segment.Epoch == _state.Epoch)
                maxCounterThisEpoch = Math.Max(maxCounterThisEpoch, segment.LastCounter);
        }
        _nextSegmentId = maxId + 1;
        // Start after the reserved mark (counters up to it may have been used by records since acknowledged and deleted);
        // the segment maximum only matters if the state file was somehow rolled back.
        _nextCounter = Math.Max(_state.Reserved, maxCounterThisEpoch) + 1;

        List<OutboxKey> acknowledged;
        try
        {
            acknowledged = AckJournal.Load(Path.Combine(_directory, JournalFileName));
        }
        catch (Exception ex) when (IsIoError(ex))
        {
            _logger.LogWarning(ex, "Could not read the outbox acknowledgement journal; acknowledged records may be resent");
            acknowledged = [];
        }
        foreach (var key in acknowledged)
        {
            if (TryFind(key, out var segment, out var index) && !segment.IsDone(index))
                MarkDone(segment, index);
        }
        for (var i = _segments.Count - 1; i >= 0; i--)
        {
            if (_segments[i].PendingCount == 0)
                RemoveSegment(_segments[i]);
        }
        CompactJournal();

        if (_segments.Count > 0)
        {
            _logger.LogInformation(
                "Outbox recovered {Records} unacknowledged records ({Bytes} bytes) in {Segments} segments; epoch {Epoch}, next counter {Counter}",
                _pendingRecords, _pendingBytes, _segments.Count, _state.Epoch, _nextCounter);
        }
    }

    private void ScanSegment(Segment segment, byte[] buffer)
    {
        var file = segment.Handle!;
        var length = RandomAccess.GetLength(file);
        long offset = 0;
        while (offset < length)
        {
            var status = SegmentFormat.Probe(file, offset, length, buffer, out var info);
            if (status == SegmentFormat.FrameStatus.Ok)
            {
                var consistent = offset <= uint.MaxValue && info.Epoch != 0 &&
                    (segment.Count == 0 || (info.Epoch == segment.Epoch && info.Counter > segment.LastCounter));
                if (consistent)
                {
                    if (segment.Count == 0) segment.Epoch = info.Epoch;
                    segment.Add(info.Counter, offset, info.PayloadLength);
                    segment.PendingCount++;
                    segment.PendingBytes += info.PayloadLength;
                    offset += SegmentFormat.HeaderSize + info.PayloadLength;
                    continue;
                }
                status = SegmentFormat.FrameStatus.BadCrc; // intact but out of place: treat as damage
            }

            var intactAfter = SegmentFormat.CountIntactFramesFrom(file, offset + 1, length, buffer);
            if (intactAfter == 0 && status != SegmentFormat.FrameStatus.BadCrc)
            {
                // A record whose write never completed (its append never returned Appended): nothing is lost.
                _logger.LogWarning(
                    "Outbox segment {Path}: truncating a torn record at the tail (offset {Offset}, {Bytes} bytes); the {Records} records before it are intact",
                    segment.Path, offset, length - offset, segment.Count);
            }
            else
            {
                var lost = intactAfter + 1;
                _droppedRecords += lost;
                _logger.LogError(
                    "Outbox segment {Path} is corrupt at offset {Offset} ({Status}): kept the {Kept} records before it, dropped {Dropped} records from there to the end of the segment ({Bytes} bytes)",
                    segment.Path, offset, status, segment.Count, lost, length - offset);
            }
            try
            {
                RandomAccess.SetLength(file, offset);
                RandomAccess.FlushToDisk(file);
            }
            catch (Exception ex) when (IsIoError(ex))
            {
                _logger.LogWarning(ex, "Could not truncate outbox segment {Path} at offset {Offset}", segment.Path, offset);
            }
            break;
        }
        segment.Length = offset;
    }

    // =====================================================================================================
    // Writer (holder of _gate)
    // =====================================================================================================

    private void ProcessBatch()
    {
        long bytes = 0;
        while (_batch.Count < MaxBatchRecords && bytes < MaxBatchBytes && _queue.TryDequeue(out var op))
        {
            if (!op.TryTake()) continue; // cancelled while waiting
            _batch.Add(op);
            bytes += op.Payload.Length;
        }
        if (_batch.Count == 0)
            return;
        try
        {
            if (Volatile.Read(ref _disposeStarted) != 0)
            {
                foreach (var op in _batch)
                    op.Fail(new ObjectDisposedException(nameof(DurableOutbox)));
                return;
            }
            foreach (var op in _batch)
                WriteOne(op);
            Commit();
        }
        catch (Exception ex)
        {
            // A bug or something unforeseen (even OOM): never leave an appender waiting forever, never leave the index inconsistent.
            _logger.LogError(ex, "Unexpected outbox append failure");
            RollBackInFlight($"unexpected error: {ex.Message}", ex);
            foreach (var op in _batch)
            {
                if (!op.Completed)
                    Drop(op, $"unexpected error: {ex.Message}", ex);
            }
        }
        finally
        {
            _batch.Clear();
        }
    }

    private void WriteOne(PendingAppend op)
    {
        var payload = op.Payload;
        var frameLength = (long)SegmentFormat.HeaderSize + payload.Length;

        if (_nextCounter > _state.Reserved)
        {
            try
            {
                _state.Reserve(_nextCounter + CounterBlock - 1);
            }
            catch (Exception ex) when (IsIoError(ex))
            {
                Drop(op, $"could not persist the counter reservation: {ex.Message}", ex);
                return;
            }
        }

        MakeRoom(frameLength);

        if (!EnsureActiveSegment(out var failure, out var failureException))
        {
            Drop(op, failure!, failureException);
            return;
        }
        var segment = _active!;
        var offset = segment.Length;
        var counter = _nextCounter++; // consumed even if the write fails: a counter is never reused
        SegmentFormat.WriteHeader(_header, _state.Epoch, counter, payload.Span);
        _frameParts[0] = _header;
        _frameParts[1] = payload;
        try
        {
            RandomAccess.Write(segment.Handle!, _frameParts, offset);
        }
        catch (Exception ex) when (IsIoError(ex))
        {
            RollBackFailedWrite(segment, offset);
            Drop(op, $"write failed: {ex.Message}", ex);
            return;
        }
        finally
        {
            _frameParts[1] = default; // do not keep the caller's buffer alive
        }

        if (!IsTouched(segment))
            _touched.Add((segment, offset)); // remember its length before this batch, for a rollback
        lock (_sync)
        {
            segment.Length += frameLength;
            segment.InFlight++;
            _diskBytes += frameLength;
        }
        _inFlight.Add(new InFlightRecord(op, segment, offset, payload.Length, counter));
    }

    private bool IsTouched(Segment segment)
    {
        foreach (var (touched, _) in _touched)
        {
            if (touched == segment) return true;
        }
        return false;
    }

    /// <summary>Drops the oldest segments until <paramref name="frameLength"/> more bytes fit within MaxBytes.</summary>
    private void MakeRoom(long frameLength)
    {
        while (true)
        {
            List<OutboxKey>? lost = null;
            var dropped = false;
            lock (_sync)
            {
                if (_diskBytes + frameLength <= _maxBytes || _segments.Count == 0)
                    return;
                var victim = _segments[0];
                if (victim.InFlight == 0)
                {
                    if (victim == _active) _active = null;
                    victim.Sealed = true;
                    var lostRecords = victim.PendingCount;
                    var lostBytes = victim.PendingBytes;
                    _droppedRecords += lostRecords;
                    if (lostRecords > 0 && Discarded is not null)
                    {
                        lost = new List<OutboxKey>(lostRecords);
                        for (var i = 0; i < victim.Count; i++)
                            if (!victim.IsDone(i)) lost.Add(new OutboxKey(victim.Epoch, victim.CounterAt(i)));
                    }
                    RemoveSegment(victim);
                    if (lostRecords > 0)
                    {
                        _logger.LogWarning(
                            "Outbox is at its bound of {MaxBytes} bytes: dropped the oldest segment {Segment} with {Records} unacknowledged records ({Bytes} bytes); {TotalDropped} records dropped so far",
                            _maxBytes, victim.Id, lostRecords, lostBytes, _droppedRecords);
                    }
                    dropped = true;
                }
            }
            if (dropped)
            {
                if (lost is not null)
                    foreach (var key in lost) Discarded?.Invoke(key);
                continue;
            }
            // The oldest segment holds records of this very batch: make them durable first, then drop it.
            Commit();
        }
    }

    private bool EnsureActiveSegment(out string? failure, out Exception? exception)
    {
        failure = null;
        exception = null;
        lock (_sync)
        {
            if (_active is { } current)
            {
                if (current.Length < _segmentBytes)
                    return true;
                current.Sealed = true; // full: roll over
                _active = null;
                if (!ReleaseIfFinished(current))
                    ReleaseIdleHandle(current);
            }
        }

        var id = _nextSegmentId++;
        var path = SegmentPath(id);
        var segment = new Segment(id, path) { Epoch = _state.Epoch };
        try
        {
            segment.Handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception ex) when (IsIoError(ex))
        {
            failure = $"could not create segment {path}: {ex.Message}";
            exception = ex;
            return false;
        }
        DirectorySync.Fsync(_directory);
        lock (_sync)
        {
            _segments.Add(segment);
            _active = segment;
        }
        return true;
    }

    /// <summary>After a failed write: cut the partial frame off and continue in a fresh segment next time.</summary>
    private void RollBackFailedWrite(Segment segment, long offset)
    {
        try
        {
            RandomAccess.SetLength(segment.Handle!, offset);
        }
        catch (Exception ex) when (IsIoError(ex) || ex is ArgumentException)
        {
            _logger.LogWarning(ex, "Could not truncate outbox segment {Path} after a failed write; it is sealed and its tail will be discarded on the next open", segment.Path);
        }
        lock (_sync)
        {
            // Sealed either way: a partial frame may remain (if the truncate failed) and must stay the segment's tail,
            // and a segment on a device that keeps failing should not be retried forever.
            segment.Sealed = true;
            if (_active == segment) _active = null;
            if (!ReleaseIfFinished(segment))
                ReleaseIdleHandle(segment);
        }
    }

    /// <summary>Makes the records written in this batch durable and visible, then completes their appends.</summary>
    private void Commit()
    {
        if (_inFlight.Count == 0)
        {
            _touched.Clear();
            return;
        }
        Exception? failure = null;
        foreach (var (segment, _) in _touched)
        {
            try
            {
                RandomAccess.FlushToDisk(segment.Handle!);
            }
            catch (Exception ex) when (IsIoError(ex))
            {
                failure = ex;
                break;
            }
        }
        if (failure is not null)
        {
            RollBackInFlight($"fsync failed: {failure.Message}", failure);
            return;
        }

        lock (_sync)
        {
            foreach (var record in _inFlight)
            {
                var segment = record.Segment;
                segment.Add(record.Counter, record.Offset, record.PayloadLength);
                segment.InFlight--;
                segment.PendingCount++;
                segment.PendingBytes += record.PayloadLength;
                _pendingRecords++;
                _pendingBytes += record.PayloadLength;
            }
            foreach (var (segment, _) in _touched)
            {
                if (segment != _active)
                    ReleaseIdleHandle(segment);
            }
            SignalReader();
        }
        var epoch = _state.Epoch;
        foreach (var record in _inFlight)
            record.Op.Complete(new AppendResult(AppendStatus.Appended, new OutboxKey(epoch, record.Counter), null));
        _inFlight.Clear();
        _touched.Clear();
    }

    /// <summary>The records of this batch could not be made durable: cut them off and report them dropped.</summary>
    private void RollBackInFlight(string reason, Exception exception)
    {
        lock (_sync)
        {
            foreach (var (segment, lengthBefore) in _touched)
            {
                try
                {
                    RandomAccess.SetLength(segment.Handle!, lengthBefore);
                }
                catch (Exception ex) when (IsIoError(ex) || ex is ArgumentException)
                {
                    _logger.LogWarning(ex, "Could not truncate outbox segment {Path} after a failed fsync", segment.Path);
                }
                _diskBytes -= segment.Length - lengthBefore;
                segment.Length = lengthBefore;
                segment.InFlight = 0;
                segment.Sealed = true; // the page cache state of this file is unknown after a failed fsync: do not write more to it
                if (_active == segment) _active = null;
                if (!ReleaseIfFinished(segment))
                    ReleaseIdleHandle(segment);
            }
        }
        foreach (var record in _inFlight)
        {
            if (!record.Op.Completed)
                Drop(record.Op, reason, exception);
        }
        _inFlight.Clear();
        _touched.Clear();
    }

    private void Drop(PendingAppend op, string reason, Exception? exception)
    {
        lock (_sync) _droppedRecords++;
        op.Complete(AppendResult.Dropped(reason));

        // Rate-limited: on a full disk every append fails.
        var now = _time.GetTimestamp();
        if (_lastFailureLog != 0 && _time.GetElapsedTime(_lastFailureLog, now) < FailureLogInterval)
        {
            _suppressedFailures++;
            return;
        }
        _logger.LogWarning(exception, "Outbox append dropped: {Reason} ({Suppressed} similar failures not logged since the last message)", reason, _suppressedFailures);
        _lastFailureLog = now;
        _suppressedFailures = 0;
    }

    // =====================================================================================================
    // Index helpers (caller holds _sync)
    // =====================================================================================================

    private bool TryTakeNext(bool pooled, out OutboxRecord record)
    {
        var removedAny = false;
        try
        {
            foreach (var segment in _segments)
            {
                if (segment.Id < _cursorSegment) continue;
                var index = segment.Id == _cursorSegment ? _cursorIndex : 0;
                for (; index < segment.Count; index++)
                {
                    if (segment.IsDone(index)) continue;
                    _cursorSegment = segment.Id;
                    _cursorIndex = index + 1;
                    if (TryReadRecord(segment, index, pooled, out record))
                        return true;
                    removedAny = true;
                }
                _cursorSegment = segment.Id;
                _cursorIndex = segment.Count;
                // Records of a group commit still in flight here will be published at this segment's end; segments
                // after it (rolled over to in the same batch) hold nothing published yet. Moving the cursor past this
                // segment now would skip those records for good.
                if (segment.InFlight > 0)
                    break;
            }
            record = null!;
            return false;
        }
        finally
        {
            if (removedAny) ReleaseFinishedSegments();
        }
    }

    private bool TryReadRecord(Segment segment, int index, bool pooled, out OutboxRecord record)
    {
        if (_readerSegment != segment)
        {
            var previous = _readerSegment;
            _readerSegment = segment;
            if (previous is not null) ReleaseIdleHandle(previous);
        }
        var length = segment.LengthAt(index);
        var counter = segment.CounterAt(index);
        var frameLength = SegmentFormat.HeaderSize + length;
        var buffer = pooled ? System.Buffers.ArrayPool<byte>.Shared.Rent(frameLength) : new byte[frameLength];
        var frame = buffer.AsSpan(0, frameLength);
        string problem;
        Exception? exception = null;
        try
        {
            segment.Handle ??= File.OpenHandle(segment.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            if (!SegmentFormat.ReadExactly(segment.Handle, frame, segment.OffsetAt(index)))
                problem = "the file is shorter than the index says";
            else if (!SegmentFormat.IsValidFrame(frame, segment.Epoch, counter))
                problem = "checksum mismatch";
            else
            {
                record = new OutboxRecord(new OutboxKey(segment.Epoch, counter), buffer.AsMemory(SegmentFormat.HeaderSize, length))
                {
                    PooledBuffer = pooled ? buffer : null,
                };
                return true;
            }
        }
        catch (Exception ex) when (IsIoError(ex))
        {
            problem = ex.Message;
            exception = ex;
        }
        if (pooled) System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        // Damaged on disk after it was written: it can never be sent. Dropping it keeps the sender from getting stuck.
        _logger.LogError(exception, "Outbox record {Epoch}/{Counter} in {Path} cannot be read back ({Problem}); dropped",
            segment.Epoch, counter, segment.Path, problem);
        MarkDone(segment, index);
        _journal.Append(new OutboxKey(segment.Epoch, counter));
        _droppedRecords++;
        record = null!;
        return false;
    }

    /// <summary>Marks the record done; false when it was unknown or already done.</summary>
    private bool Complete(OutboxKey key, string? rejectReason)
    {
        lock (_sync)
        {
            if (_disposed || !TryFind(key, out var segment, out var index) || segment.IsDone(index))
                return false;
            MarkDone(segment, index);
            if (rejectReason is not null)
            {
                _droppedRecords++;
                _logger.LogWarning("Coordinator rejected outbox record {Epoch}/{Counter}: {Reason}; dropped", key.Epoch, key.Counter, rejectReason);
            }
            if (!ReleaseIfFinished(segment))
            {
                _journal.Append(key);
                if (_journal.Length > _journalCompactAt)
                    CompactJournal();
            }
            return true;
        }
    }

    private bool TryFind(OutboxKey key, out Segment segment, out int index)
    {
        foreach (var candidate in _segments)
        {
            if (candidate.Count == 0 || candidate.Epoch != key.Epoch) continue;
            if (key.Counter < candidate.FirstCounter || key.Counter > candidate.LastCounter) continue;
            index = candidate.IndexOf(key.Counter);
            if (index >= 0)
            {
                segment = candidate;
                return true;
            }
        }
        segment = null!;
        index = -1;
        return false;
    }

    private void MarkDone(Segment segment, int index)
    {
        var length = segment.LengthAt(index);
        segment.SetDone(index);
        segment.PendingCount--;
        segment.PendingBytes -= length;
        _pendingRecords--;
        _pendingBytes -= length;
        _liveDoneRecords++;
    }

    /// <summary>Deletes a sealed segment once nothing in it is pending. Returns whether it was deleted.</summary>
    private bool ReleaseIfFinished(Segment segment)
    {
        if (!segment.Sealed || segment.PendingCount != 0 || segment.InFlight != 0 || segment == _active)
            return false;
        RemoveSegment(segment);
        return true;
    }

    private void ReleaseFinishedSegments()
    {
        for (var i = _segments.Count - 1; i >= 0; i--)
            ReleaseIfFinished(_segments[i]);
    }

    private void RemoveSegment(Segment segment)
    {
        _segments.Remove(segment);
        _diskBytes -= segment.Length;
        _pendingRecords -= segment.PendingCount;
        _pendingBytes -= segment.PendingBytes;
        _liveDoneRecords -= segment.DoneCount;
        if (_readerSegment == segment) _readerSegment = null;
        CloseHandle(segment);
        TryDelete(segment.Path);
    }

    /// <summary>Sealed segments are not kept open unless being read or written.</summary>
    private void ReleaseIdleHandle(Segment segment)
    {
        if (segment != _active && segment != _readerSegment && segment.InFlight == 0)
            CloseHandle(segment);
    }

    private static void CloseHandle(Segment segment)
    {
        segment.Handle?.Dispose();
        segment.Handle = null;
    }

    private void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (IsIoError(ex))
        {
            _logger.LogWarning(ex, "Could not delete outbox segment {Path}", path);
        }
    }

    private void CompactJournal()
    {
        var keys = new List<OutboxKey>((int)Math.Min(_liveDoneRecords, int.MaxValue));
        foreach (var segment in _segments)
        {
            for (var i = 0; i < segment.Count; i++)
            {
                if (segment.IsDone(i))
                    keys.Add(new OutboxKey(segment.Epoch, segment.CounterAt(i)));
            }
        }
        _journal.Rewrite(keys);
        // If compaction failed the journal is still long: back off instead of retrying on every acknowledgement.
        _journalCompactAt = Math.Max(MinJournalCompaction, _journal.Length * 2);
    }

    private void SignalReader()
    {
        var signal = _readerSignal;
        _readerSignal = null;
        signal?.TrySetResult();
    }

    private static bool IsIoError(Exception ex) =>
        ex is IOException or UnauthorizedAccessException or NotSupportedException;

    private sealed class PendingAppend(ReadOnlyMemory<byte> payload)
    {
        private const int Queued = 0, Taken = 1, Cancelled = 2;
        private int _state;
        private volatile bool _completed;

        public ReadOnlyMemory<byte> Payload { get; } = payload;
        public AppendResult Result { get; private set; }
        public Exception? Error { get; private set; }
        public bool Completed => _completed;

        public bool TryTake() => Interlocked.CompareExchange(ref _state, Taken, Queued) == Queued;
        public bool TryCancel() => Interlocked.CompareExchange(ref _state, Cancelled, Queued) == Queued;

        public void Complete(AppendResult result)
        {
            Result = result;
            _completed = true;
        }

        public void Fail(Exception error)
        {
            Error = error;
            _completed = true;
        }
    }

    private readonly record struct InFlightRecord(PendingAppend Op, Segment Segment, long Offset, int PayloadLength, ulong Counter);
}
