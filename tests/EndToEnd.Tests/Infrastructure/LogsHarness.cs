using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.EndToEnd.Tests.Infrastructure;

/// <summary>One coordinator on PostgreSQL shared by the log-shipping end-to-end classes (they run one after another,
/// each test with its own agent id); a test that stops it starts it again before it ends.</summary>
public sealed class LogsCoordinatorFixture : IAsyncLifetime
{
    public PostgresDatabase Postgres { get; } = new();
    public TempDirectory Directory { get; } = new();
    public CoordinatorProcess Coordinator { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Postgres.InitializeAsync();
        Coordinator = await CoordinatorProcess.StartOnPostgresAsync(Postgres, Directory);
    }

    public async Task DisposeAsync()
    {
        if (Coordinator is not null) await Coordinator.DisposeAsync();
        await Postgres.DisposeAsync();
        Directory.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class LogsCollection : ICollectionFixture<LogsCoordinatorFixture>
{
    public const string Name = "logs end to end";
}

/// <summary>Agent setups and stored-entry reads for the log-shipping end-to-end tests.</summary>
public static class LogsE2E
{
    /// <summary>An agent shipping the given sources in small, quick batches.</summary>
    public static AgentSetup Agent(string agentId, IEnumerable<Dictionary<string, object>> sources, Dictionary<string, object>? more = null,
        IReadOnlyDictionary<string, string?>? environment = null, Dictionary<string, object>? logs = null)
    {
        var logsSection = new Dictionary<string, object> { ["sources"] = sources.ToArray(), ["batchMaxSeconds"] = 0.2 };
        foreach (var (k, v) in logs ?? []) logsSection[k] = v;
        var config = new Dictionary<string, object> { ["logs"] = logsSection };
        foreach (var (k, v) in more ?? []) config[k] = v;
        return new AgentSetup { AgentId = agentId, Config = config, Environment = environment };
    }

    public static Dictionary<string, object> FileSource(string name, string glob) =>
        new() { ["name"] = name, ["path"] = glob, ["startAt"] = "beginning" };

    /// <summary>Every stored entry of the agent (two days back), oldest first, through the search API's pages.</summary>
    public static async Task<List<LogRecord>> StoredAsync(CoordinatorProcess coordinator, string agentId, string q = "")
    {
        using var channel = coordinator.Channel();
        var api = new Protocol.V1.Logs.LogsClient(channel);
        var all = new List<LogRecord>();
        var token = "";
        do
        {
            var page = await api.SearchLogsAsync(new SearchLogsRequest
            {
                Host = agentId, Q = q, Limit = 5000, OldestFirst = true, PageToken = token,
                From = Timestamp.FromDateTime(DateTime.UtcNow.AddDays(-2)),
            });
            all.AddRange(page.Entries);
            token = page.NextPageToken;
        } while (token.Length > 0);
        return all;
    }

    /// <summary>The newest stored entry's message (a cheap "is the last line there yet" probe).</summary>
    public static async Task<string?> NewestAsync(CoordinatorProcess coordinator, string agentId)
    {
        using var channel = coordinator.Channel();
        var page = await new Protocol.V1.Logs.LogsClient(channel).SearchLogsAsync(new SearchLogsRequest
        {
            Host = agentId, Limit = 1, From = Timestamp.FromDateTime(DateTime.UtcNow.AddDays(-2)),
        });
        return page.Entries.Count == 0 ? null : page.Entries[0].Message;
    }

    /// <summary>Every expected line stored exactly once, in the order written: the whole list is compared.</summary>
    public static void AssertExactlyOnceInOrder(IReadOnlyList<string> expected, IReadOnlyList<string> stored, string what)
    {
        var duplicates = stored.GroupBy(m => m).Where(g => g.Count() > 1).Select(g => $"{g.Key} ×{g.Count()}").Take(5).ToList();
        Assert.True(duplicates.Count == 0, $"{what}: stored more than once: {string.Join(", ", duplicates)}");
        var missing = expected.Except(stored).ToList();
        Assert.True(missing.Count == 0, $"{what}: {missing.Count} lines never stored, e.g. {string.Join(", ", missing.Take(5))}");
        var unexpected = stored.Except(expected).Take(5).ToList();
        Assert.True(unexpected.Count == 0, $"{what}: stored lines never written: {string.Join(", ", unexpected)}");
        Assert.Equal(expected, stored);
    }
}

/// <summary>
/// Appends numbered lines to a path (open, append, close: the path, not a handle, so a rotated-away file gets no more
/// lines) on a background task. A rotation runs between two writes (<see cref="RotateAsync"/>) and starts a new
/// generation: lines carry "g{generation}", so each file's lines can be checked for order on their own.
/// </summary>
public sealed class LineWriter(string path, string prefix, int linesPerWrite = 20) : IAsyncDisposable
{
    readonly SemaphoreSlim gate = new(1, 1);
    readonly List<List<string>> generations = [[]];
    readonly CancellationTokenSource stop = new();
    Task? running;
    int written;

    public int Written => Volatile.Read(ref written);

    /// <summary>The lines written, per generation (one list per file).</summary>
    public IReadOnlyList<IReadOnlyList<string>> Generations { get { lock (generations) return [.. generations.Select(g => g.ToList())]; } }

    public IReadOnlyList<string> All { get { lock (generations) return [.. generations.SelectMany(g => g)]; } }

    public static string Line(string prefix, int generation, int i) => $"{prefix} g{generation} {i:D6} lorem ipsum dolor sit amet";

    /// <summary>Writes <paramref name="total"/> lines, <c>linesPerWrite</c> every <paramref name="every"/> (a pace, not a wait).</summary>
    public void Start(int total, TimeSpan every) => running = Task.Run(async () =>
    {
        using var timer = new PeriodicTimer(every);
        while (Written < total && await timer.WaitForNextTickAsync(stop.Token))
            await WriteAsync(Math.Min(linesPerWrite, total - Written));
    });

    public async Task WriteAsync(int count)
    {
        await gate.WaitAsync();
        try
        {
            var lines = new List<string>(count);
            lock (generations)
            {
                for (var i = 0; i < count; i++) lines.Add(Line(prefix, generations.Count - 1, written + i));
                generations[^1].AddRange(lines);
            }
            await File.AppendAllTextAsync(path, string.Concat(lines.Select(l => l + "\n")));
            Interlocked.Add(ref written, count);
        }
        finally { gate.Release(); }
    }

    /// <summary>Runs a rotation between two writes; the lines after it are the next generation.</summary>
    public async Task RotateAsync(Func<Task> rotate)
    {
        await gate.WaitAsync();
        try
        {
            await rotate();
            lock (generations) generations.Add([]);
        }
        finally { gate.Release(); }
    }

    public Task Completion => running ?? Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        try { await Completion; } catch (OperationCanceledException) { }
        stop.Dispose();
    }
}
