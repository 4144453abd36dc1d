using System.Globalization;
using Fleet.Agent.Configuration;
using Fleet.Agent.Events;
using Fleet.Agent.Transport;

namespace Fleet.Agent.Outbox;

/// <summary>
/// Reports what the durable outbox lost: once the agent is connected and <see cref="DurableOutbox.DroppedRecords"/>
/// has grown since the last report, it records an <c>outbox.dropped</c> agent event (attributes <c>dropped_records</c>
/// since the last report, <c>dropped_records_total</c> since the agent started, <c>pending_records</c>,
/// <c>max_bytes</c>), which the coordinator stores with the agent's events. The running total is also the
/// <c>agent.outbox.dropped_records</c> metric (<see cref="Metrics.MetricsPipeline"/>).
/// The event goes through the outbox itself, so it is written only while connected: a full outbox is draining then,
/// and the event is among the newest records, never the oldest one dropped next.
/// </summary>
public sealed partial class OutboxDropReporter(
    DurableOutbox outbox,
    Func<bool> connected,
    AgentEventPublisher events,
    AgentOptions options,
    TimeProvider time,
    ILogger<OutboxDropReporter> logger) : BackgroundService
{
    public const string EventKind = "outbox.dropped";

    /// <summary>How often the counter is compared with the last report.</summary>
    public static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(1);

    long reported;

    /// <summary>Dropped records covered by an event so far.</summary>
    public long Reported => Interlocked.Read(ref reported);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(CheckInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
                await ReportAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
    }

    /// <summary>Records one event for the drops since the last report, if there are any and the agent is connected.</summary>
    public async Task<bool> ReportAsync(CancellationToken cancellationToken)
    {
        var total = outbox.DroppedRecords;
        var since = total - Interlocked.Read(ref reported);
        if (since <= 0 || !connected()) return false;
        var attributes = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["dropped_records"] = since.ToString(CultureInfo.InvariantCulture),
            ["dropped_records_total"] = total.ToString(CultureInfo.InvariantCulture),
            ["pending_records"] = outbox.PendingRecords.ToString(CultureInfo.InvariantCulture),
            ["max_bytes"] = options.OutboxMaxBytes.ToString(CultureInfo.InvariantCulture),
        };
        var message = string.Create(CultureInfo.InvariantCulture,
            $"the outbox dropped {since} records (oldest first, or unwritable) since the last report; {total} since the agent started");
        var result = await events.PublishAsync(EventKind, message, attributes, cancellationToken);
        if (result.Status != AppendStatus.Appended)
        {
            LogNotRecorded(since, result.Reason);
            return false;
        }
        Interlocked.Exchange(ref reported, total);
        LogReported(since, total);
        return true;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox dropped {Dropped} records since the last report ({Total} since start); reported to the coordinator")]
    partial void LogReported(long dropped, long total);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox dropped {Dropped} records, but the report could not be written ({Reason}); retrying")]
    partial void LogNotRecorded(long dropped, string? reason);
}
