using Fleet.Agent.Commands;
using Fleet.Agent.Configuration;
using Fleet.Agent.Logs;
using Fleet.Agent.Outbox;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace Fleet.Agent.Tests.Logs;

/// <summary>
/// A log pipeline over real files in a temp directory and a real outbox. The test plays the coordinator: it reads the
/// outbox records and (optionally) acknowledges them. The pipeline can be stopped and started again on the same state.
/// </summary>
internal sealed class LogHarness : IAsyncDisposable
{
    readonly TempDirectory temp = new();
    LogPipeline? pipeline;

    public LogHarness(params LogSourceSettings[] sources)
    {
        LogDirectory = Directory.CreateDirectory(temp.Combine("log")).FullName;
        Options = new AgentOptions
        {
            StateDirectory = Directory.CreateDirectory(temp.Combine("state")).FullName,
            Logs = new LogSettings
            {
                Sources = [.. sources],
                BatchMaxDelay = TimeSpan.FromMilliseconds(50),
                ScanInterval = TimeSpan.FromMilliseconds(200),
                PollInterval = TimeSpan.FromMilliseconds(50),
                PartialLineTimeout = TimeSpan.FromMilliseconds(500),
                MultilineTimeout = TimeSpan.FromMilliseconds(300),
            },
        };
        Outbox = DurableOutbox.Open(new OutboxOptions { Directory = temp.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
    }

    public string LogDirectory { get; }
    public AgentOptions Options { get; }
    public DurableOutbox Outbox { get; }
    public ICommandRunner Runner { get; set; } = StandInsRunner();

    /// <summary>Every entry read from the outbox so far, in order.</summary>
    public List<LogEntry> Shipped { get; } = [];

    public LogCounters Counters => pipeline!.Counters;

    public string Log(string name) => Path.Combine(LogDirectory, name);

    public string CheckpointFile => Path.Combine(Options.StateDirectory, "logs", "checkpoints.json");

    static CommandRunner StandInsRunner() => new(NullLogger<CommandRunner>.Instance, TimeProvider.System);

    /// <summary>Starts the pipeline and waits until its first scan has happened (the checkpoint file exists).</summary>
    public async Task StartAsync()
    {
        pipeline = new LogPipeline(Options, Outbox, Runner, TimeProvider.System, NullLoggerFactory.Instance, NullLogger<LogPipeline>.Instance);
        await pipeline.StartAsync(CancellationToken.None);
        if (Options.Logs.Sources.Any(s => s.Path is not null))
            await Eventually.UntilAsync(() => File.Exists(CheckpointFile), "the first scan");
    }

    public async Task StopAsync()
    {
        if (pipeline is null) return;
        await pipeline.StopAsync(CancellationToken.None).DefaultTimeout();
        pipeline.Dispose();
        pipeline = null;
    }

    /// <summary>Reads outbox records (acknowledging each when <paramref name="ack"/>) until <paramref name="done"/> holds for <see cref="Shipped"/>.</summary>
    public async Task<List<LogEntry>> ShippedUntilAsync(Func<List<LogEntry>, bool> done, bool ack = true, string what = "entries")
    {
        using var deadline = new CancellationTokenSource(Eventually.Deadline);
        while (!done(Shipped))
        {
            OutboxRecord record;
            try { record = await Outbox.ReadNextAsync(deadline.Token); }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"Timed out waiting for {what}; shipped: {string.Join(" | ", Shipped.Select(e => e.Message))}");
            }
            var batch = Batch.Parser.ParseFrom(record.Payload.Span);
            if (batch.PayloadCase != Batch.PayloadOneofCase.Logs) continue;
            Shipped.AddRange(batch.Logs.Entries);
            if (ack) Outbox.Acknowledge(record.Key);
        }
        return Shipped;
    }

    public Task<List<LogEntry>> ShippedAsync(params string[] messages) =>
        ShippedUntilAsync(s => messages.All(m => s.Any(e => e.Message == m)), what: string.Join(", ", messages));

    public static void Append(string path, params string[] lines) => File.AppendAllText(path, string.Concat(lines.Select(l => l + "\n")));

    public static LogSourceSettings FileSource(string name, string glob, LogStartAt startAt = LogStartAt.Default) =>
        new() { Name = name, Path = glob, StartAt = startAt };

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await Outbox.DisposeAsync();
        temp.Dispose();
    }
}
