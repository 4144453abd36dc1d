using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Fleet.Agent.Logs;

/// <summary>
/// Tails the files matching one source's glob. A reconcile scan (every <see cref="LogSettings.ScanInterval"/>) expands
/// the glob and is authoritative; inotify (<see cref="FileSystemWatcher"/>) only makes it and the reads happen sooner,
/// so a missed or overflowed event never loses a file.
/// <list type="bullet">
/// <item>Files are followed by open handle: a file renamed away (rotation) or deleted keeps being read to its end
/// before it is closed, and files are always read in the order they were opened (old before new).</item>
/// <item>A file shorter than the read position was truncated (copytruncate): reading restarts at 0 under the new
/// identity (the fingerprint of the new first line). The fingerprint is re-checked on every scan.</item>
/// <item>Start position: the acknowledged checkpoint of the same identity; a checkpoint past the end of the file or
/// for the same inode with another fingerprint is discarded (logged once) and the file read from 0. Without one:
/// <c>startAt</c>, by default the end for files existing at the source's very first start, else the beginning.</item>
/// </list>
/// </summary>
public sealed partial class FileSource : IDisposable
{
    const int ReadChunk = 64 * 1024;

    readonly LogSourceSettings source;
    readonly FileGlob glob;
    readonly LogSettings settings;
    readonly LogEntryProcessor processor;
    readonly LogShipper shipper;
    readonly LogCheckpoints checkpoints;
    readonly LogCounters counters;
    readonly TimeProvider time;
    readonly ILogger logger;
    readonly List<TailedFile> files = [];
    readonly SemaphoreSlim wake = new(0, 1);
    readonly byte[] chunk = new byte[ReadChunk];
    FileSystemWatcher? watcher;
    volatile bool scanRequested = true;
    bool firstScanDone;
    readonly bool firstStart;

    public FileSource(LogSourceSettings source, LogSettings settings, LogEntryProcessor processor, LogShipper shipper,
        LogCheckpoints checkpoints, LogCounters counters, TimeProvider time, ILogger logger)
    {
        this.source = source;
        glob = FileGlob.Create(source.Path!);
        this.settings = settings;
        this.processor = processor;
        this.shipper = shipper;
        this.checkpoints = checkpoints;
        this.counters = counters;
        this.time = time;
        this.logger = logger;
        firstStart = !checkpoints.IsKnown(source.Name);
    }

    /// <summary>Paths of the files open now (for tests and diagnostics).</summary>
    public IReadOnlyList<string> OpenPaths { get { lock (files) return [.. files.Select(f => f.Path)]; } }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        StartWatcher();
        var nextScan = time.GetTimestamp();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                if (scanRequested || time.GetTimestamp() >= nextScan)
                {
                    scanRequested = false;
                    if (watcher is null) StartWatcher();
                    Reconcile();
                    nextScan = time.GetTimestamp() + (long)(settings.ScanInterval.TotalSeconds * time.TimestampFrequency);
                }
                PollAll();
                if (shipper.Saturated)
                {
                    // Backpressure: the rest of the file waits on disk, not in memory, until the shipper has room.
                    await shipper.WaitForRoomAsync(cancellationToken);
                    continue;
                }
                await wake.WaitAsync(settings.PollInterval, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
    }

    void Wake(bool scan)
    {
        if (scan) scanRequested = true;
        if (wake.CurrentCount == 0)
        {
            try { wake.Release(); } catch (SemaphoreFullException) { } catch (ObjectDisposedException) { }
        }
    }

    void StartWatcher()
    {
        if (!Directory.Exists(glob.BaseDirectory)) return;
        try
        {
            var w = new FileSystemWatcher(glob.BaseDirectory)
            {
                IncludeSubdirectories = glob.Recursive,
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.Size | NotifyFilters.LastWrite,
            };
            w.Changed += (_, _) => Wake(scan: false);
            w.Created += (_, _) => Wake(scan: true);
            w.Deleted += (_, _) => Wake(scan: true);
            w.Renamed += (_, _) => Wake(scan: true);
            w.Error += (_, _) => Wake(scan: true); // overflow: the scan finds whatever the events missed
            w.EnableRaisingEvents = true;
            watcher = w;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or PlatformNotSupportedException or UnauthorizedAccessException)
        {
            LogWatcherFailed(ex, source.Name, glob.BaseDirectory);
        }
    }

    /// <summary>Expands the glob: opens new files, notices files that left their path and re-checks fingerprints.</summary>
    void Reconcile()
    {
        var seen = new HashSet<TailedFile>();
        foreach (var path in glob.Expand())
        {
            if (FileIdentity.Stat(path) is not { } id) continue;
            var open = files.FirstOrDefault(f => f.Device == id.Device && f.Inode == id.Inode);
            if (open is not null)
            {
                open.Path = path;
                seen.Add(open);
                continue;
            }
            SafeFileHandle handle;
            try { handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { LogOpenFailed(ex, source.Name, path); continue; }
            if (FileIdentity.Stat(handle) is not { } actual || files.Any(f => f.Device == actual.Device && f.Inode == actual.Inode))
            {
                handle.Dispose();
                continue;
            }
            var file = new TailedFile(path, handle, actual.Device, actual.Inode);
            lock (files) files.Add(file);
            counters.Opened();
            seen.Add(file);
        }
        foreach (var file in files.ToList()) // a truncation found here may add a copy to drain
        {
            if (seen.Contains(file)) { file.DetachedAt = null; CheckFingerprint(file); }
            else if (file.DetachedAt is null)
            {
                file.DetachedAt = time.GetTimestamp();
                counters.Rotated();
            }
        }
        if (!firstScanDone)
        {
            foreach (var file in files.ToList()) Identify(file);
            firstScanDone = true;
            checkpoints.MarkKnown(source.Name);
            checkpoints.Save();
        }
        var live = new HashSet<string>(StringComparer.Ordinal);
        foreach (var file in files) if (file.Identity is { } identity) live.Add(identity.ToString());
        checkpoints.Retain(source.Name, live);
    }

    /// <summary>Decides where a newly identified file starts; false while it cannot be identified yet.</summary>
    bool Identify(TailedFile file, bool truncated = false)
    {
        if (file.Identity is not null) return true;
        if (FileIdentity.ReadFingerprint(file.Handle) is not { } fingerprint) return false;
        var identity = new FileIdentity(file.Device, file.Inode, fingerprint);
        var length = RandomAccess.GetLength(file.Handle);
        long start;
        if (truncated && file.PreviousIdentity is { } previous && previous.BaseId == identity.BaseId)
        {
            // Truncated and refilled with the same first line: a new generation, so its offsets (from 0 again) are
            // not taken for the ones already stored.
            identity = identity with { Generation = previous.Generation + 1 };
            checkpoints.Remove(source.Name, previous.ToString());
            start = 0;
        }
        else if (checkpoints.FindLatest(source.Name, identity) is { } latest)
        {
            identity = identity with { Generation = latest.Generation };
            if (latest.Checkpoint.Offset <= length) start = latest.Checkpoint.Offset;
            else
            {
                // Shorter than where we were: truncated while the agent was not looking.
                LogCheckpointPastEnd(source.Name, file.Path, latest.Checkpoint.Offset, length);
                counters.CheckpointDiscarded();
                DrainCopy(file.Path, identity with { Generation = latest.Generation }, latest.Checkpoint.Offset);
                checkpoints.Remove(source.Name, identity.ToString());
                identity = identity with { Generation = latest.Generation + 1 };
                start = 0;
            }
        }
        else
        {
            if (checkpoints.FindOtherFingerprint(source.Name, identity) is { } other)
            {
                LogCheckpointOtherFile(source.Name, file.Path, other.FileId, identity.ToString());
                counters.CheckpointDiscarded();
                if (FileIdentity.Parse(other.FileId) is { } rewritten) DrainCopy(file.Path, rewritten, other.Offset);
                checkpoints.Remove(source.Name, other.FileId);
            }
            var existedAtFirstStart = firstStart && !firstScanDone;
            var atEnd = !truncated && (source.StartAt == LogStartAt.End || (source.StartAt == LogStartAt.Default && existedAtFirstStart));
            start = atEnd ? LastLineEnd(file.Handle, length) : 0;
            if (atEnd)
                checkpoints.Apply([CheckpointMark.File(source.Name, identity.ToString(), file.Path, start)], 0);
        }
        file.Identity = identity;
        file.FileId = identity.ToString();
        file.PreviousIdentity = null;
        file.ReadPosition = start;
        file.LineStart = start;
        return true;
    }

    /// <summary>The offset after the last '\n' in the file (looking back at most 64 KiB), so reading starts at a line.</summary>
    static long LastLineEnd(SafeFileHandle handle, long length)
    {
        var look = (int)Math.Min(length, 64 * 1024);
        var buffer = new byte[look];
        var read = RandomAccess.Read(handle, buffer, length - look);
        var newline = buffer.AsSpan(0, read).LastIndexOf((byte)'\n');
        return newline < 0 ? length : length - look + newline + 1;
    }

    void CheckFingerprint(TailedFile file)
    {
        if (file.Identity is not { } identity) return;
        var current = FileIdentity.ReadFingerprint(file.Handle);
        if (current is null && RandomAccess.GetLength(file.Handle) >= file.ReadPosition) return; // still growing into its first line
        if (current != identity.Fingerprint) Truncated(file);
    }

    void Truncated(TailedFile file)
    {
        LogTruncated(source.Name, file.Path, file.ReadPosition);
        counters.Truncated();
        FlushEntry(file);
        if (file.Identity is { } identity) DrainCopy(file.Path, identity, file.LineStart);
        file.Partial.Clear();
        file.PreviousIdentity = file.Identity ?? file.PreviousIdentity;
        file.Identity = null;
        file.ReadPosition = 0;
        file.LineStart = 0;
        Identify(file, truncated: true);
    }

    /// <summary>
    /// copytruncate copies the file, then truncates it: whatever had not been read before the truncation is only in the
    /// copy. A file next to <paramref name="path"/> whose name starts with its name (app.log.1, app.log-20261128),
    /// that is not tailed already and starts with the truncated file's first line is that copy: it is read from
    /// <paramref name="from"/> under the truncated file's id, so its offsets are the ones already stored (the
    /// coordinator's dedupe makes an overlap harmless), then closed once drained. A compressed copy cannot be found.
    /// </summary>
    void DrainCopy(string path, FileIdentity truncated, long from)
    {
        var directory = System.IO.Path.GetDirectoryName(path);
        var name = System.IO.Path.GetFileName(path);
        if (directory is null || name.Length == 0) return;
        string[] candidates;
        try { candidates = Directory.GetFiles(directory, name + "*"); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return; }
        foreach (var candidate in candidates.Order(StringComparer.Ordinal))
        {
            if (candidate == path || FileIdentity.Stat(candidate) is not { } id) continue;
            if (files.Any(f => f.Device == id.Device && f.Inode == id.Inode)) continue;
            SafeFileHandle handle;
            try { handle = File.OpenHandle(candidate, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { continue; }
            if (FileIdentity.Stat(handle) is not { } actual || FileIdentity.ReadFingerprint(handle) != truncated.Fingerprint
                || RandomAccess.GetLength(handle) <= from)
            {
                handle.Dispose();
                continue;
            }
            var copy = new TailedFile(candidate, handle, actual.Device, actual.Inode)
            {
                Identity = truncated,
                FileId = truncated.ToString(),
                ReadPosition = from,
                LineStart = from,
                DetachedAt = time.GetTimestamp(),
                IsCopy = true,
            };
            lock (files)
            {
                // Before the truncated file: what it held before the truncation is read before what came after.
                var at = files.FindIndex(f => f.Path == path);
                files.Insert(at < 0 ? files.Count : at, copy);
            }
            counters.Opened();
            LogDrainingCopy(source.Name, path, candidate, from);
            return;
        }
    }

    void PollAll()
    {
        var now = time.GetTimestamp();
        for (var i = 0; i < files.Count; i++)
        {
            var file = files[i];
            try
            {
                Poll(file, now);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                LogReadFailed(ex, source.Name, file.Path);
                file.DetachedAt ??= now;
            }
            if (file.DetachedAt is { } detached && file.AtEnd && time.GetElapsedTime(detached) >= settings.ScanInterval)
            {
                // Renamed away or deleted, drained, and quiet for a scan interval: whatever is pending goes now.
                if (file.Partial.Count > 0) EmitPartial(file);
                FlushEntry(file);
                file.Handle.Dispose();
                lock (files)
                {
                    var at = files.IndexOf(file); // a copy to drain may have been inserted before it
                    files.RemoveAt(at);
                    if (at <= i) i--;
                }
                counters.Closed();
            }
        }
    }

    void Poll(TailedFile file, long now)
    {
        if (file.Identity is null && !Identify(file, truncated: file.FileId is not null)) return;
        var length = RandomAccess.GetLength(file.Handle);
        if (length < file.ReadPosition)
        {
            Truncated(file);
            if (file.Identity is null) return;
        }
        long lines = 0, bytes = 0;
        while (file.ReadPosition < length && !shipper.Saturated)
        {
            var n = RandomAccess.Read(file.Handle, chunk, file.ReadPosition);
            if (n == 0) break;
            bytes += n;
            var span = chunk.AsSpan(0, n);
            while (span.Length > 0)
            {
                var newline = span.IndexOf((byte)'\n');
                var take = newline < 0 ? span.Length : newline + 1;
                var room = settings.MaxLineBytes - file.Partial.Count;
                if (take > room && newline != room)
                {
                    // A line longer than the bound: ship it in pieces.
                    file.Partial.AddRange(span[..room]);
                    file.ReadPosition += room;
                    span = span[room..];
                    EmitPartial(file);
                    lines++;
                    continue;
                }
                file.ReadPosition += take;
                if (newline >= 0 && file.Partial.Count == 0)
                {
                    // The whole line is in this chunk (the common case): decoded straight from the read buffer.
                    EmitLine(file, span[..take], file.ReadPosition);
                    lines++;
                }
                else
                {
                    file.Partial.AddRange(span[..take]);
                    if (newline >= 0)
                    {
                        EmitPartial(file);
                        lines++;
                    }
                }
                span = span[take..];
            }
            file.PartialSince = time.GetTimestamp(); // when data last arrived; not the poll's start, which a long read leaves behind
        }
        counters.Read(lines, bytes);
        file.AtEnd = file.ReadPosition >= length;
        if (file.Partial.Count > 0 && time.GetElapsedTime(file.PartialSince) >= settings.PartialLineTimeout)
            EmitPartial(file);
        if (file.Entry.Length > 0 && time.GetElapsedTime(file.LastLineAt) >= settings.MultilineTimeout)
            FlushEntry(file);
    }

    /// <summary>The bytes in <see cref="TailedFile.Partial"/> form a line ending at the read position.</summary>
    void EmitPartial(TailedFile file)
    {
        EmitLine(file, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(file.Partial), file.ReadPosition);
        file.Partial.Clear();
    }

    /// <summary><paramref name="bytes"/> (with or without its line end) form a line ending at <paramref name="end"/>.
    /// Without a multiline rule the line is the entry: its message is decoded once from the bytes and processed at
    /// once; with one, lines are joined in <see cref="TailedFile.Entry"/> until the next entry starts.</summary>
    void EmitLine(TailedFile file, ReadOnlySpan<byte> bytes, long end)
    {
        var length = bytes.Length;
        if (length > 0 && bytes[length - 1] == '\n') length--;
        if (length > 0 && bytes[length - 1] == '\r') length--;
        var line = Encoding.UTF8.GetString(bytes[..length]);
        var start = file.LineStart;
        file.LineStart = end;
        if (source.MultilineStart is null)
        {
            // Single-line source: nothing to join (and a pending joined entry cannot exist; the rule is fixed per source).
            if (line.Length > 0) Ship(file, line, start, end);
            return;
        }
        if (file.Entry.Length > 0 && processor.StartsEntry(line)) FlushEntry(file);
        if (file.Entry.Length == 0)
        {
            file.EntryStart = start;
            file.Entry.Append(line);
        }
        else file.Entry.Append('\n').Append(line);
        file.EntryEnd = end;
        file.LastLineAt = time.GetTimestamp();
        if (file.Entry.Length >= settings.MaxLineBytes * 4) FlushEntry(file);
    }

    void FlushEntry(TailedFile file)
    {
        if (file.Entry.Length == 0 || file.FileId is null) return;
        var message = file.Entry.ToString();
        file.Entry.Clear();
        Ship(file, message, file.EntryStart, file.EntryEnd);
    }

    void Ship(TailedFile file, string message, long start, long end)
    {
        if (file.FileId is null) return;
        var now = time.GetUtcNow();
        var at = (source.ParseTime ? LogTime.Parse(message, now) : null) ?? now.ToUnixTimeMilliseconds();
        var entry = processor.Process(message, file.Path, file.FileId, start, "", at, null);
        if (entry is not null)
            shipper.Add(entry, CheckpointMark.File(source.Name, file.FileId, file.Path, end));
    }

    public void Dispose()
    {
        watcher?.Dispose();
        lock (files)
        {
            foreach (var file in files) { file.Handle.Dispose(); counters.Closed(); }
            files.Clear();
        }
        wake.Dispose();
    }

    sealed class TailedFile(string path, SafeFileHandle handle, ulong device, ulong inode)
    {
        public string Path { get; set; } = path;
        public SafeFileHandle Handle { get; } = handle;
        public ulong Device { get; } = device;
        public ulong Inode { get; } = inode;
        public FileIdentity? Identity { get; set; }
        /// <summary>The identity before the last truncation, until the file is identified again.</summary>
        public FileIdentity? PreviousIdentity { get; set; }
        public string? FileId { get; set; }
        /// <summary>Next byte to read.</summary>
        public long ReadPosition { get; set; }
        /// <summary>Offset of the first byte of <see cref="Partial"/> (the line being assembled).</summary>
        public long LineStart { get; set; }
        public List<byte> Partial { get; } = [];
        public long PartialSince { get; set; }
        public StringBuilder Entry { get; } = new();
        public long EntryStart { get; set; }
        public long EntryEnd { get; set; }
        public long LastLineAt { get; set; }
        public long? DetachedAt { get; set; }
        public bool AtEnd { get; set; }
        /// <summary>A copytruncate copy read only to drain what the truncation removed (<see cref="DrainCopy"/>).</summary>
        public bool IsCopy { get; init; }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Logs {Source}: cannot watch {Directory} (inotify); relying on the periodic scan")]
    partial void LogWatcherFailed(Exception ex, string source, string directory);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Logs {Source}: cannot open {Path}")]
    partial void LogOpenFailed(Exception ex, string source, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Logs {Source}: reading {Path} failed; draining what is open")]
    partial void LogReadFailed(Exception ex, string source, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Logs {Source}: checkpoint of {Path} at {Offset} is past the end ({Length} bytes); discarded, reading from the start")]
    partial void LogCheckpointPastEnd(string source, string path, long offset, long length);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Logs {Source}: checkpoint {Old} belongs to another file than {Path} ({New}, a reused inode); discarded, reading from the start")]
    partial void LogCheckpointOtherFile(string source, string path, string old, string @new);

    [LoggerMessage(Level = LogLevel.Information, Message = "Logs {Source}: {Path} was truncated; reading the rest of it from its copy {Copy} at {Offset}")]
    partial void LogDrainingCopy(string source, string path, string copy, long offset);

    [LoggerMessage(Level = LogLevel.Information, Message = "Logs {Source}: {Path} was truncated at {Offset} (copytruncate?); reading from the start")]
    partial void LogTruncated(string source, string path, long offset);
}
