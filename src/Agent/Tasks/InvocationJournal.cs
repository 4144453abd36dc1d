using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Fleet.Agent.Outbox;
using Fleet.Protocol.V1;

namespace Fleet.Agent.Tasks;

/// <summary>
/// The agent's record of invocations, so a task runs at most once per invocation id: "started" is written (and
/// fsync'd) before the task executes, "finished" with the final TaskFinished when it ends. One JSON object per line in
/// <c>STATE/tasks/journal.jsonl</c>; a torn last line (power loss mid-write) is ignored. Compacted on open and when it
/// grows: finished entries older than <see cref="Retention"/> go, and at most <see cref="MaxEntries"/> are kept.
/// Entries started but not finished are never dropped.
/// </summary>
public sealed partial class InvocationJournal : IDisposable
{
    // A finished entry is what stops a redelivered Dispatch from running the invocation again, so entries are kept
    // far longer than any redelivery can come: the coordinator never redelivers an invocation older than its
    // execution timeout plus a grace period (hours at most). Dispatches carry no creation time, so the agent cannot
    // check that itself. Entries are small (a finished one is its bounded TaskFinished), so 100k of them are cheap.
    public static readonly TimeSpan Retention = TimeSpan.FromDays(30);
    public const int MaxEntries = 100_000;

    /// <summary>Lines appended between compactions (keeps the file from growing far past what it holds).</summary>
    const int CompactEveryLines = 10_000;

    readonly string path;
    readonly TimeProvider time;
    readonly ILogger logger;
    readonly Lock gate = new();
    readonly Dictionary<string, Entry> entries = new(StringComparer.Ordinal);
    FileStream file;
    int linesSinceCompaction;

    InvocationJournal(string path, TimeProvider time, ILogger logger)
    {
        this.path = path;
        this.time = time;
        this.logger = logger;
        Load();
        Compact();
        file = OpenForAppend();
    }

    public static InvocationJournal Open(string stateDirectory, TimeProvider time, ILogger<InvocationJournal> logger)
    {
        var directory = Path.Combine(stateDirectory, "tasks");
        Directory.CreateDirectory(directory);
        return new InvocationJournal(Path.Combine(directory, "journal.jsonl"), time, logger);
    }

    public string FilePath => path;

    public int Count { get { lock (gate) return entries.Count; } }

    /// <summary>The entry of the invocation, or null when it was never started here.</summary>
    public Entry? Find(string invocationId)
    {
        lock (gate) return entries.TryGetValue(invocationId, out var e) ? e : null;
    }

    /// <summary>Invocations started but not finished (the agent stopped while they ran).</summary>
    public IReadOnlyList<string> Unfinished()
    {
        lock (gate) return [.. entries.Values.Where(e => e.Finished is null).OrderBy(e => e.StartedUnixMs).Select(e => e.InvocationId)];
    }

    /// <summary>Durably records that the invocation is about to execute.</summary>
    public void RecordStarted(string invocationId) =>
        Write(new JournalLine { Id = invocationId, At = time.GetUtcNow().ToUnixTimeMilliseconds(), State = "started" });

    /// <summary>Durably records the invocation's final result.</summary>
    public void RecordFinished(string invocationId, TaskFinished finished) =>
        Write(new JournalLine { Id = invocationId, At = time.GetUtcNow().ToUnixTimeMilliseconds(), State = "finished", Result = Convert.ToBase64String(Google.Protobuf.MessageExtensions.ToByteArray(finished)) });

    void Write(JournalLine line)
    {
        var bytes = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(line, JournalJsonContext.Default.JournalLine) + "\n");
        lock (gate)
        {
            file.Write(bytes);
            file.Flush(flushToDisk: true);
            Apply(line);
            if (++linesSinceCompaction > CompactEveryLines)
            {
                file.Dispose();
                Compact();
                file = OpenForAppend();
            }
        }
    }

    void Load()
    {
        if (!File.Exists(path)) return;
        var lines = File.ReadAllLines(path);
        for (var i = 0; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            JournalLine? line;
            try { line = JsonSerializer.Deserialize(lines[i], JournalJsonContext.Default.JournalLine); }
            catch (JsonException) { line = null; }
            if (line?.Id is null || line.State is not ("started" or "finished"))
            {
                LogUnreadableLine(path, i + 1, i == lines.Length - 1 ? "a torn last write" : "corrupt");
                continue;
            }
            Apply(line);
        }
    }

    void Apply(JournalLine line)
    {
        if (line.State == "started")
        {
            entries[line.Id!] = new Entry(line.Id!, line.At, null);
            return;
        }
        TaskFinished? finished = null;
        try { finished = line.Result is null ? new TaskFinished() : TaskFinished.Parser.ParseFrom(Convert.FromBase64String(line.Result)); }
        catch (Exception ex) when (ex is FormatException or Google.Protobuf.InvalidProtocolBufferException) { finished = new TaskFinished(); }
        var startedAt = entries.TryGetValue(line.Id!, out var existing) ? existing.StartedUnixMs : line.At;
        entries[line.Id!] = new Entry(line.Id!, startedAt, finished, line.At);
    }

    /// <summary>Drops old finished entries and rewrites the file atomically.</summary>
    void Compact()
    {
        var cutoff = time.GetUtcNow().Add(-Retention).ToUnixTimeMilliseconds();
        var keep = entries.Values
            .Where(e => e.Finished is null || e.FinishedUnixMs >= cutoff)
            .OrderByDescending(e => e.Finished is null)
            .ThenByDescending(e => e.FinishedUnixMs)
            .Take(MaxEntries)
            .ToList();
        var dropped = entries.Count - keep.Count;
        entries.Clear();
        foreach (var e in keep) entries[e.InvocationId] = e;

        var temporary = path + ".tmp";
        using (var output = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            foreach (var e in keep.OrderBy(e => e.StartedUnixMs))
            {
                var started = new JournalLine { Id = e.InvocationId, At = e.StartedUnixMs, State = "started" };
                output.Write(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(started, JournalJsonContext.Default.JournalLine) + "\n"));
                if (e.Finished is null) continue;
                var finished = new JournalLine { Id = e.InvocationId, At = e.FinishedUnixMs, State = "finished", Result = Convert.ToBase64String(Google.Protobuf.MessageExtensions.ToByteArray(e.Finished)) };
                output.Write(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(finished, JournalJsonContext.Default.JournalLine) + "\n"));
            }
            output.Flush(flushToDisk: true);
        }
        File.Move(temporary, path, overwrite: true);
        DirectorySync.Fsync(Path.GetDirectoryName(path)!);
        linesSinceCompaction = 0;
        if (dropped > 0) LogCompacted(dropped, keep.Count);
    }

    FileStream OpenForAppend() => new(path, FileMode.Append, FileAccess.Write, FileShare.Read);

    public void Dispose()
    {
        lock (gate) file.Dispose();
    }

    /// <param name="Finished">The final result; null while started but not finished.</param>
    public sealed record Entry(string InvocationId, long StartedUnixMs, TaskFinished? Finished, long FinishedUnixMs = 0);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Invocation journal {Path}: line {Line} is unreadable ({What}); ignored")]
    partial void LogUnreadableLine(string path, int line, string what);

    [LoggerMessage(Level = LogLevel.Information, Message = "Invocation journal compacted: {Dropped} old entries dropped, {Kept} kept")]
    partial void LogCompacted(int dropped, int kept);
}

public sealed class JournalLine
{
    public string? Id { get; set; }
    public long At { get; set; }
    public string? State { get; set; }
    public string? Result { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(JournalLine))]
internal sealed partial class JournalJsonContext : JsonSerializerContext;
