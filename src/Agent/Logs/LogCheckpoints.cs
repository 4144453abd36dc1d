using System.Text.Json;
using System.Text.Json.Serialization;
using Fleet.Agent.Outbox;

namespace Fleet.Agent.Logs;

/// <summary>Where a source has been shipped up to: a file identity and the offset after the last acknowledged entry, or a journal cursor.</summary>
public readonly record struct CheckpointMark(string Source, string FileId, string Path, long Offset, string? Cursor)
{
    public static CheckpointMark File(string source, string fileId, string path, long offset) => new(source, fileId, path, offset, null);
    public static CheckpointMark Journal(string source, string cursor) => new(source, "", "", 0, cursor);
    internal (string, string) Key => (Source, FileId);
}

/// <summary>
/// The acknowledged positions of every source, in <c>{stateDir}/logs/checkpoints.json</c>, written atomically
/// (temp file, fsync, rename, directory fsync). Only acknowledged batches (and batches the outbox dropped) move it,
/// so after a crash or restart reading resumes at the first entry the coordinator may not have stored.
/// </summary>
public sealed class LogCheckpoints
{
    readonly string path;
    readonly ILogger logger;
    readonly Lock gate = new();
    readonly CheckpointDocument doc;
    readonly Dictionary<(string, string), long> appliedSequence = [];
    bool dirty;

    LogCheckpoints(string path, CheckpointDocument doc, ILogger logger)
    {
        this.path = path;
        this.doc = doc;
        this.logger = logger;
    }

    public static LogCheckpoints Open(string stateDirectory, ILogger logger)
    {
        var path = System.IO.Path.Combine(stateDirectory, "logs", "checkpoints.json");
        CheckpointDocument? doc = null;
        try
        {
            if (System.IO.File.Exists(path))
                doc = JsonSerializer.Deserialize(System.IO.File.ReadAllText(path), CheckpointJsonContext.Default.CheckpointDocument);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException)
        {
            logger.LogWarning(ex, "Log checkpoints {Path} unreadable; log files are read as if first seen", path);
        }
        return new LogCheckpoints(path, doc ?? new CheckpointDocument(), logger);
    }

    /// <summary>Whether this source was started before (its existing files are then not "existing at first start").</summary>
    public bool IsKnown(string source) { lock (gate) return doc.Sources.Contains(source); }

    public void MarkKnown(string source)
    {
        lock (gate) if (!doc.Sources.Contains(source)) { doc.Sources.Add(source); dirty = true; }
    }

    public FileCheckpoint? Find(string source, string fileId)
    {
        lock (gate) return doc.Files.FirstOrDefault(f => f.Source == source && f.FileId == fileId);
    }

    /// <summary>The checkpoint of this file in its latest generation (see <see cref="FileIdentity.Generation"/>), if any.</summary>
    public (FileCheckpoint Checkpoint, int Generation)? FindLatest(string source, FileIdentity identity)
    {
        lock (gate)
            return doc.Files
                .Where(f => f.Source == source)
                .Select(f => (Checkpoint: f, Generation: identity.GenerationOf(f.FileId)))
                .Where(f => f.Generation is not null)
                .OrderByDescending(f => f.Generation)
                .Select(f => ((FileCheckpoint, int)?)(f.Checkpoint, f.Generation!.Value))
                .FirstOrDefault();
    }

    /// <summary>A checkpoint of the same device and inode with another fingerprint (a reused inode or a rewritten file).</summary>
    public FileCheckpoint? FindOtherFingerprint(string source, FileIdentity identity)
    {
        var prefix = identity.BaseId;
        prefix = prefix[..(prefix.LastIndexOf(':') + 1)];
        lock (gate) return doc.Files.FirstOrDefault(f => f.Source == source && f.FileId.StartsWith(prefix, StringComparison.Ordinal) && identity.GenerationOf(f.FileId) is null);
    }

    public void Remove(string source, string fileId)
    {
        lock (gate) dirty |= doc.Files.RemoveAll(f => f.Source == source && f.FileId == fileId) > 0;
    }

    public string? Cursor(string source)
    {
        lock (gate) return doc.Journals.TryGetValue(source, out var cursor) ? cursor : null;
    }

    /// <summary>Moves the positions forward; a mark from an older batch (lower <paramref name="sequence"/>) than one already applied is ignored.</summary>
    public void Apply(IEnumerable<CheckpointMark> marks, long sequence)
    {
        lock (gate)
            foreach (var mark in marks)
            {
                if (appliedSequence.TryGetValue(mark.Key, out var applied) && applied > sequence) continue;
                appliedSequence[mark.Key] = sequence;
                dirty = true;
                if (mark.Cursor is { } cursor)
                {
                    doc.Journals[mark.Source] = cursor;
                    continue;
                }
                var file = doc.Files.FirstOrDefault(f => f.Source == mark.Source && f.FileId == mark.FileId);
                if (file is null) doc.Files.Add(new FileCheckpoint { Source = mark.Source, FileId = mark.FileId, Path = mark.Path, Offset = mark.Offset });
                else if (mark.Offset >= file.Offset) { file.Offset = mark.Offset; file.Path = mark.Path; }
            }
    }

    /// <summary>Forgets file checkpoints of a source whose files are no longer there (only ids in <paramref name="live"/> stay).</summary>
    public void Retain(string source, IReadOnlySet<string> live)
    {
        lock (gate) dirty |= doc.Files.RemoveAll(f => f.Source == source && !live.Contains(f.FileId)) > 0;
    }

    /// <summary>Writes the file if anything changed. Never throws for I/O problems (a full disk is logged, retried on the next save).</summary>
    public bool Save()
    {
        string json;
        lock (gate)
        {
            if (!dirty) return true;
            json = JsonSerializer.Serialize(doc, CheckpointJsonContext.Default.CheckpointDocument);
            dirty = false;
        }
        var directory = System.IO.Path.GetDirectoryName(path)!;
        var temp = path + ".tmp";
        try
        {
            Directory.CreateDirectory(directory);
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                stream.Write(System.Text.Encoding.UTF8.GetBytes(json));
                stream.Flush(flushToDisk: true);
            }
            System.IO.File.Move(temp, path, overwrite: true);
            DirectorySync.Fsync(directory);
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            lock (gate) dirty = true;
            logger.LogWarning(ex, "Could not write log checkpoints {Path}; will retry", path);
            return false;
        }
    }
}

public sealed class FileCheckpoint
{
    public string Source { get; set; } = "";
    public string FileId { get; set; } = "";
    public string Path { get; set; } = "";
    public long Offset { get; set; }
}

public sealed class CheckpointDocument
{
    public List<string> Sources { get; set; } = [];
    public List<FileCheckpoint> Files { get; set; } = [];
    public Dictionary<string, string> Journals { get; set; } = new(StringComparer.Ordinal);
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(CheckpointDocument))]
internal sealed partial class CheckpointJsonContext : JsonSerializerContext;
