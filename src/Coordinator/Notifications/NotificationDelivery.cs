using System.Collections.Concurrent;
using System.Threading.Channels;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Notifications;

/// <summary>A notification row is ready to be claimed and sent (the row decides; the message is only a nudge).</summary>
public sealed record NotificationDue(long NotificationId)
{
    public static async Task SendAsync(ISendEndpointProvider bus, string queue, long id, CancellationToken cancellationToken)
    {
        var endpoint = await bus.GetSendEndpoint(new Uri("queue:" + queue));
        await endpoint.Send(new NotificationDue(id), cancellationToken);
    }
}

/// <summary>Delivers a <see cref="NotificationDue"/> through <see cref="NotificationDelivery"/>.</summary>
public sealed class NotificationDueConsumer(NotificationDelivery delivery) : IConsumer<NotificationDue>
{
    public Task Consume(ConsumeContext<NotificationDue> context) => delivery.DeliverAsync(context.Message.NotificationId, context.CancellationToken);
}

/// <summary>What one send attempt came to.</summary>
public sealed record SendResult(bool Delivered, bool Permanent = false, string? Error = null, TimeSpan? RetryAfter = null)
{
    public static readonly SendResult Ok = new(true);
    public static SendResult Retry(string error, TimeSpan? after = null) => new(false, false, error, after);
    public static SendResult Fail(string error) => new(false, true, error);
}

/// <summary>One channel kind's sender.</summary>
public interface INotificationSender
{
    string Kind { get; }
    Task<SendResult> SendAsync(string receiverName, ReceiverOptions receiver, NotificationRecord notification, NotificationPayload payload, CancellationToken cancellationToken);
}

/// <summary>
/// Claim, send, mark: the row is claimed with a conditional update (owner + lease) so a redelivered message or a second
/// replica finds nothing to do; after the receiver accepted it the row is marked sent (only by the lease holder).
/// A failure schedules the next attempt with exponential backoff (or the receiver's Retry-After, whichever is later);
/// after the budget the row is dead, audited in the same transaction.
/// </summary>
public sealed partial class NotificationDelivery(
    IDbContextFactory<FleetDbContext> dbFactory, IEnumerable<INotificationSender> senders, IOptions<NotificationsOptions> options,
    AuditLog audit, TimeProvider time, ILogger<NotificationDelivery> logger)
{
    readonly NotificationsOptions settings = options.Value;
    readonly Dictionary<string, INotificationSender> byKind = senders.ToDictionary(s => s.Kind);
    readonly Channel<bool> retryScheduled = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    /// <summary>This process's lease owner name (unique per instance, so two replicas in one process differ too).</summary>
    public string Owner { get; } = Clip($"{Guid.NewGuid():N}@{Environment.MachineName}:{Environment.ProcessId}", 128);

    /// <summary>Completes when a retry was scheduled since the last wait (the sweeper sleeps until it is due).</summary>
    public async Task WaitForRetryAsync(CancellationToken cancellationToken) => await retryScheduled.Reader.ReadAsync(cancellationToken);

    /// <summary>The exponential backoff before attempt <paramref name="attempts"/>+1.</summary>
    public static TimeSpan Backoff(NotificationsOptions settings, int attempts)
    {
        var factor = Math.Pow(2, Math.Clamp(attempts - 1, 0, 30));
        var delay = TimeSpan.FromTicks((long)Math.Min(settings.RetryBase.Ticks * factor, settings.RetryMax.Ticks));
        return delay;
    }

    public async Task DeliverAsync(long id, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var until = now + settings.Lease;
        NotificationRecord? row;
        await using (var db = dbFactory.CreateDbContext())
        {
            var claimed = await db.Set<NotificationRecord>()
                .Where(n => n.Id == id && ((n.State == NotificationStates.Pending && n.NextAttemptAt <= now && (n.LeaseUntil == null || n.LeaseUntil < now))
                                           || (n.State == NotificationStates.Sending && n.LeaseUntil < now)))
                .ExecuteUpdateAsync(s => s.SetProperty(n => n.State, NotificationStates.Sending).SetProperty(n => n.LeaseOwner, Owner)
                    .SetProperty(n => n.LeaseUntil, until).SetProperty(n => n.Attempts, n => n.Attempts + 1), cancellationToken);
            if (claimed == 0)
            {
                LogNothingToDo(id);
                return;
            }
            row = await db.Set<NotificationRecord>().AsNoTracking().SingleAsync(n => n.Id == id, cancellationToken);
        }

        SendResult result;
        if (!settings.Receivers.TryGetValue(row.Receiver, out var receiver))
            result = SendResult.Fail($"receiver '{row.Receiver}' is no longer configured");
        else if (!byKind.TryGetValue(receiver.Kind, out var sender))
            result = SendResult.Fail($"no sender for kind '{receiver.Kind}'");
        else
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(settings.SendTimeout);
            try
            {
                var payload = System.Text.Json.JsonSerializer.Deserialize<NotificationPayload>(row.PayloadJson, NotificationPayload.Json)
                    ?? throw new System.Text.Json.JsonException("the stored payload is null");
                result = await sender.SendAsync(row.Receiver, receiver, row, payload, timeout.Token);
            }
            catch (System.Text.Json.JsonException ex)
            {
                result = SendResult.Fail($"the stored payload cannot be read: {ex.Message}");
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                result = SendResult.Retry($"no answer within {settings.SendTimeout}");
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or System.Net.Sockets.SocketException
                                           or MailKit.ProtocolException or MailKit.Net.Smtp.SmtpCommandException or MailKit.ServiceNotConnectedException
                                           or System.Security.Authentication.AuthenticationException or MailKit.Security.AuthenticationException)
            {
                result = SendResult.Retry(ex.Message);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // A failure nobody foresaw still counts as an attempt, so the retry budget (and dead-lettering) bounds it.
                result = SendResult.Retry($"{ex.GetType().Name}: {ex.Message}");
            }
        }
        await RecordAsync(row, result, cancellationToken);
    }

    /// <summary>
    /// Sends a test message to <paramref name="receiverName"/> at once, outside the outbox (nothing is stored or retried):
    /// the receivers API's test-send. Null when no such receiver is configured.
    /// </summary>
    public async Task<SendResult?> TestSendAsync(string receiverName, string requestedBy, CancellationToken cancellationToken)
    {
        if (!settings.Receivers.TryGetValue(receiverName, out var receiver)) return null;
        if (!byKind.TryGetValue(receiver.Kind, out var sender)) return SendResult.Fail($"no sender for kind '{receiver.Kind}'");
        var now = time.GetUtcNow().UtcDateTime;
        var labels = new Dictionary<string, string> { ["alertname"] = "fleet-test", ["host"] = "fleet-test" };
        var payload = new NotificationPayload(0, "fleet-test", "firing", "info", labels,
            new Dictionary<string, string> { ["summary"] = $"Test message from Fleet to receiver '{receiverName}', requested by {requestedBy}. Nothing is wrong." },
            0, now, "test", 0);
        var row = new NotificationRecord { Id = 0, Receiver = receiverName, State = NotificationStates.Sending, CreatedAt = now, NextAttemptAt = now };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(settings.SendTimeout);
        try
        {
            return await sender.SendAsync(receiverName, receiver, row, payload, timeout.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return SendResult.Retry($"no answer within {settings.SendTimeout}");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return SendResult.Retry($"{ex.GetType().Name}: {ex.Message}");
        }
    }

    async Task RecordAsync(NotificationRecord row, SendResult result, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        await using var db = dbFactory.CreateDbContext();
        var mine = db.Set<NotificationRecord>().Where(n => n.Id == row.Id && n.State == NotificationStates.Sending && n.LeaseOwner == Owner);
        // The attempt still counts when the process stops mid-record: cancellation ends the wait, not the bookkeeping.
        if (result.Delivered)
        {
            var marked = await mine.ExecuteUpdateAsync(s => s.SetProperty(n => n.State, NotificationStates.Sent).SetProperty(n => n.SentAt, now)
                .SetProperty(n => n.LeaseOwner, (string?)null).SetProperty(n => n.LeaseUntil, (DateTime?)null).SetProperty(n => n.LastError, (string?)null), CancellationToken.None);
            if (marked == 0) LogLeaseLost(row.Id);
            else LogSent(row.Id, row.Receiver, row.Attempts);
            return;
        }
        var error = Clip(result.Error ?? "failed");
        if (result.Permanent || row.Attempts >= settings.MaxAttempts)
        {
            await using var tx = await db.Database.BeginTransactionAsync(CancellationToken.None);
            var marked = await mine.ExecuteUpdateAsync(s => s.SetProperty(n => n.State, NotificationStates.Dead).SetProperty(n => n.LastError, error)
                .SetProperty(n => n.LeaseOwner, (string?)null).SetProperty(n => n.LeaseUntil, (DateTime?)null), CancellationToken.None);
            if (marked == 0)
            {
                LogLeaseLost(row.Id);
                return;
            }
            var payload = System.Text.Json.JsonSerializer.Deserialize<NotificationPayload>(row.PayloadJson, NotificationPayload.Json);
            audit.Add(db, Actor.System("notifications"), "notification.dead", $"notification/{row.Id}", payload?.Host ?? "",
                new Dictionary<string, string?>
                {
                    ["receiver"] = row.Receiver, ["alert"] = payload?.Alert, ["state"] = payload?.State,
                    ["transition"] = row.TransitionId.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    ["attempts"] = row.Attempts.ToString(System.Globalization.CultureInfo.InvariantCulture),
                }, outcome: error);
            await db.SaveChangesAsync(CancellationToken.None);
            await tx.CommitAsync(CancellationToken.None);
            LogDead(row.Id, row.Receiver, row.Attempts, error);
            return;
        }
        var delay = Backoff(settings, row.Attempts);
        if (result.RetryAfter is { } after && after > delay) delay = after;
        var next = now + delay;
        var scheduled = await mine.ExecuteUpdateAsync(s => s.SetProperty(n => n.State, NotificationStates.Pending).SetProperty(n => n.NextAttemptAt, next)
            .SetProperty(n => n.LastError, error).SetProperty(n => n.LeaseOwner, (string?)null).SetProperty(n => n.LeaseUntil, (DateTime?)null), CancellationToken.None);
        if (scheduled == 0) LogLeaseLost(row.Id);
        else
        {
            LogRetry(row.Id, row.Receiver, row.Attempts, delay, error);
            retryScheduled.Writer.TryWrite(true);
        }
    }

    static string Clip(string text, int max = 2000) => text.Length <= max ? text : text[..max];

    [LoggerMessage(Level = LogLevel.Debug, Message = "Notification {Id}: not claimable (sent, leased by another, or not due yet)")]
    partial void LogNothingToDo(long id);

    [LoggerMessage(Level = LogLevel.Information, Message = "Notification {Id} sent to {Receiver} (attempt {Attempt})")]
    partial void LogSent(long id, string receiver, int attempt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Notification {Id} to {Receiver}: attempt {Attempt} failed, retrying in {Delay}: {Error}")]
    partial void LogRetry(long id, string receiver, int attempt, TimeSpan delay, string error);

    [LoggerMessage(Level = LogLevel.Error, Message = "Notification {Id} to {Receiver} is dead after {Attempts} attempts: {Error}")]
    partial void LogDead(long id, string receiver, int attempts, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Notification {Id}: the lease expired before the result was recorded (another replica took it over)")]
    partial void LogLeaseLost(long id);
}

/// <summary>
/// Hands out again what the bus may have lost: pending rows whose next attempt is due and sending rows whose lease
/// expired (a replica crashed mid-send). Sleeps until the earliest of those, at most <see cref="NotificationsOptions.SweepInterval"/>.
/// </summary>
public sealed partial class NotificationSweeper(
    IDbContextFactory<FleetDbContext> dbFactory, NotificationDelivery delivery, IBus bus, IOptions<NotificationsOptions> options,
    TimeProvider time, ILogger<NotificationSweeper> logger) : BackgroundService
{
    readonly NotificationsOptions settings = options.Value;
    readonly ConcurrentDictionary<long, DateTime> handedOut = new();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var wait = settings.SweepInterval;
            try
            {
                wait = await SweepAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogFailed(ex);
            }
            using var sleep = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            sleep.CancelAfter(wait);
            try { await delivery.WaitForRetryAsync(sleep.Token); }
            catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested) { }
        }
    }

    /// <summary>Sends <see cref="NotificationDue"/> for what is due; returns how long to sleep before looking again.</summary>
    public async Task<TimeSpan> SweepAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        await using var db = dbFactory.CreateDbContext();
        var due = await db.Set<NotificationRecord>().AsNoTracking()
            .Where(n => (n.State == NotificationStates.Pending && n.NextAttemptAt <= now) || (n.State == NotificationStates.Sending && n.LeaseUntil < now))
            .OrderBy(n => n.Id).Select(n => n.Id).Take(500).ToListAsync(cancellationToken);
        // A row handed out moments ago is most likely still in the queue: give the consumer the lease time before asking again.
        foreach (var id in due.Where(id => !handedOut.TryGetValue(id, out var at) || now - at >= settings.Lease))
        {
            await NotificationDue.SendAsync(bus, settings.Queue, id, cancellationToken);
            handedOut[id] = now;
            LogRepublished(id);
        }
        foreach (var id in handedOut.Keys.Where(k => !due.Contains(k))) handedOut.TryRemove(id, out _);

        var nextPending = await db.Set<NotificationRecord>().Where(n => n.State == NotificationStates.Pending && n.NextAttemptAt > now)
            .MinAsync(n => (DateTime?)n.NextAttemptAt, cancellationToken);
        var nextLease = await db.Set<NotificationRecord>().Where(n => n.State == NotificationStates.Sending && n.LeaseUntil >= now)
            .MinAsync(n => n.LeaseUntil, cancellationToken);
        var next = new[] { nextPending, nextLease }.Where(d => d is not null).Select(d => d!.Value - now + TimeSpan.FromMilliseconds(10)).DefaultIfEmpty(settings.SweepInterval).Min();
        return next < TimeSpan.Zero ? TimeSpan.Zero : next > settings.SweepInterval ? settings.SweepInterval : next;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Notification sweep failed; retrying")]
    partial void LogFailed(Exception ex);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Notification {Id} handed out again (due retry or expired lease)")]
    partial void LogRepublished(long id);
}
