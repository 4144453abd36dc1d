using Fleet.Agent.Commands;
using Fleet.Agent.Configuration;
using Fleet.Agent.Outbox;

namespace Fleet.Agent.Logs;

/// <summary>
/// Ships the configured log sources: one reader per source (a <see cref="FileSource"/> or a <see cref="JournalSource"/>)
/// feeding one <see cref="LogShipper"/>; checkpoints in <c>{stateDir}/logs</c>. Does nothing without sources.
/// </summary>
public sealed partial class LogPipeline(
    AgentOptions options,
    DurableOutbox outbox,
    ICommandRunner runner,
    TimeProvider time,
    ILoggerFactory loggers,
    ILogger<LogPipeline> logger) : BackgroundService
{
    public LogCounters Counters { get; } = new();

    /// <summary>Whether the agent holds a stream to the coordinator now (see <see cref="LogShipper"/>); set by the host.</summary>
    public Func<bool> CoordinatorConnected { get; set; } = static () => false;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Logs;
        if (settings.Sources.Count == 0) return;
        await Task.Yield();
        var checkpoints = LogCheckpoints.Open(options.StateDirectory, logger);
        using var shipper = new LogShipper(settings, outbox, checkpoints, Counters, time, loggers.CreateLogger<LogShipper>(), CoordinatorConnected);
        var files = new List<FileSource>();
        var readers = new List<Task>();
        using var stopReaders = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        foreach (var source in settings.Sources)
        {
            var processor = new LogEntryProcessor(source, settings.Redact, Counters);
            if (source.Path is not null)
            {
                var file = new FileSource(source, settings, processor, shipper, checkpoints, Counters, time, loggers.CreateLogger<FileSource>());
                files.Add(file);
                readers.Add(file.RunAsync(stopReaders.Token));
            }
            else
            {
                var journal = new JournalSource(source, processor, shipper, checkpoints, Counters, runner, options.TaskCommandSearchPath, time, loggers.CreateLogger<JournalSource>());
                readers.Add(journal.RunAsync(stopReaders.Token));
            }
        }
        LogStarted(settings.Sources.Count, settings.BatchMaxBytes, settings.BatchMaxDelay.TotalSeconds);
        var shipping = shipper.RunAsync(stoppingToken);
        try
        {
            await Task.WhenAll(readers);
        }
        finally
        {
            foreach (var file in files) file.Dispose();
            await shipping; // flushes what the readers produced before the stop
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Logs: {Sources} sources, batches of up to {Bytes} bytes or {Seconds} s")]
    partial void LogStarted(int sources, int bytes, double seconds);
}
