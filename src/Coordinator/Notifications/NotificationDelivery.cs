using System.Collections.Concurrent;
using System.Threading.Channels;
using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Schedules;
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

/// <summary>One notification in a message: its row and what it renders.</summary>
public sealed record Outgoing(NotificationRecord Row, NotificationPayload Payload);

/// <summary>One channel kind's sender: one message for one or more notifications (of the same receiver, oldest first).</summary>
public interface INotificationSender
{
    string Kind { get; }
    Task<SendResult> SendAsync(string receiverName, ReceiverOptions receiver, IReadOnlyList<Outgoing> batch, CancellationToken cancellationToken);
}

/// <summary>
/// Claim, send, mark. The receiver's gate is taken first when it has a <see cref="ReceiverOptions.MinInterval"/> (a
/// conditional update of its row, so replicas share one rate); a busy gate moves everything due for that receiver to the
/// gate's time, where it goes out together. Then the due rows of the receiver (the handed-out row first, plus its group's
/// rows still in their group wait) are claimed with one conditional update (owner token + lease), so a redelivered
/// message or a second replica finds nothing to do; they go out as ONE message; after the receiver accepted it the rows
/// are marked sent (only by the token holder). A failure schedules the next attempt with exponential backoff (or the
/// receiver's Retry-After, whichever is later, which also holds the gate); after the budget a row is dead, audited in the
/// same transaction.
/// </summary>
public sealed partial class NotificationDelivery(
    IDbContextFactory<FleetDbContext> dbFactory, IEnumerable<INotificationSender> senders, IOptions<NotificationsOptions> options,
    SilenceStore silences, IOpenWindows windows, AuditLog audit, TimeProvider time, ILogger<NotificationDelivery> logger)
{
    readonly NotificationsOptions settings = options.Value;
    readonly Dictionary<string, INotificationSender> byKind = senders.ToDictionary(s => s.Kind);
    readonly Channel<bool> retryScheduled = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    long claims;

    /// <summary>This process's lease owner name (unique per instance, so two replicas in one process differ too); each claim adds a counter.</summary>
    public string Owner { get; } = Clip($"{Guid.NewGuid():N}@{Environment.MachineName}:{Environment.ProcessId}", 100);

    /// <summary>Completes when a retry was scheduled since the last wait (the sweeper sleeps until it is due).</summary>
    public async Task WaitForRetryAsync(CancellationToken cancellationToken) => await retryScheduled.Reader.ReadAsync(cancellationToken);

    /// <summary>Makes the sweeper look again now (something became due later than it planned for).</summary>
    public void WakeSweeper() => retryScheduled.Writer.TryWrite(true);

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
        NotificationRecord? first;
        await using (var db = dbFactory.CreateDbContext())
            first = await db.Set<NotificationRecord>().AsNoTracking()
                .Where(n => n.Id == id && ((n.State == NotificationStates.Pending && n.NextAttemptAt <= now && (n.LeaseUntil == null || n.LeaseUntil < now))
                                           || (n.State == NotificationStates.Sending && n.LeaseUntil < now)))
                .SingleOrDefaultAsync(cancellationToken);
        if (first is null)
        {
            LogNothingToDo(id);
            return;
        }
        settings.Receivers.TryGetValue(first.Receiver, out var receiver);
        if (receiver is not null && receiver.EffectiveMinInterval > TimeSpan.Zero
            && await TakeGateAsync(first.Receiver, now, receiver.EffectiveMinInterval, cancellationToken) is { } notBefore)
        {
            await using var db = dbFactory.CreateDbContext();
            var moved = await db.Set<NotificationRecord>()
                .Where(n => n.Receiver == first.Receiver && n.State == NotificationStates.Pending && n.NextAttemptAt < notBefore)
                .ExecuteUpdateAsync(s => s.SetProperty(n => n.NextAttemptAt, notBefore), cancellationToken);
            LogRateLimited(first.Receiver, moved, notBefore);
            WakeSweeper();
            return;
        }

        var token = $"{Owner}#{Interlocked.Increment(ref claims)}";
        now = time.GetUtcNow().UtcDateTime; // the gate took round trips: the lease counts from the claim
        var until = now + settings.Lease;
        var max = receiver?.EffectiveMaxBatch ?? 1;
        List<NotificationRecord> rows;
        await using (var db = dbFactory.CreateDbContext())
        {
            var group = first.GroupKey;
            var candidates = await db.Set<NotificationRecord>().AsNoTracking()
                .Where(n => n.Receiver == first.Receiver
                            && ((n.State == NotificationStates.Pending && (n.LeaseUntil == null || n.LeaseUntil < now)
                                 && (n.NextAttemptAt <= now || (n.Attempts == 0 && n.GroupKey == group)))
                                || (n.State == NotificationStates.Sending && n.LeaseUntil < now)))
                .OrderBy(n => n.Id == id ? 0 : 1).ThenBy(n => n.Id).Select(n => n.Id).Take(max).ToListAsync(cancellationToken);
            if (!candidates.Contains(id)) candidates = [id, .. candidates.Take(max - 1)];
            // Still due when claimed: another replica may have tried a row meanwhile and scheduled its retry (backoff, Retry-After).
            var claimed = await db.Set<NotificationRecord>()
                .Where(n => candidates.Contains(n.Id) && ((n.State == NotificationStates.Pending && (n.LeaseUntil == null || n.LeaseUntil < now)
                                                           && (n.NextAttemptAt <= now || (n.Attempts == 0 && n.GroupKey == group)))
                                                          || (n.State == NotificationStates.Sending && n.LeaseUntil < now)))
                .ExecuteUpdateAsync(s => s.SetProperty(n => n.State, NotificationStates.Sending).SetProperty(n => n.LeaseOwner, token)
                    .SetProperty(n => n.LeaseUntil, until).SetProperty(n => n.Attempts, n => n.Attempts + 1), cancellationToken);
            if (claimed == 0)
            {
                LogNothingToDo(id);
                return;
            }
            rows = await db.Set<NotificationRecord>().AsNoTracking().Where(n => n.LeaseOwner == token).OrderBy(n => n.Id).ToListAsync(cancellationToken);
        }
        CrashPoints.Reached(CrashPoints.NotificationClaimed);

        // A row whose earlier attempts all lost their lease (the process died mid-send each time) is out of budget too.
        var overBudget = rows.Where(r => r.Attempts > settings.MaxAttempts).ToList();
        if (overBudget.Count > 0)
        {
            await RecordAsync(overBudget, token, SendResult.Fail($"gave up after {settings.MaxAttempts} attempts whose leases expired (the sender died mid-send)"), cancellationToken);
            rows = rows.Except(overBudget).ToList();
        }
        var batch = new List<Outgoing>(rows.Count);
        var unreadable = new List<NotificationRecord>();
        foreach (var row in rows)
        {
            try
            {
                batch.Add(new Outgoing(row, System.Text.Json.JsonSerializer.Deserialize<NotificationPayload>(row.PayloadJson, NotificationPayload.Json)
                    ?? throw new System.Text.Json.JsonException("the stored payload is null")));
            }
            catch (System.Text.Json.JsonException ex)
            {
                LogUnreadable(row.Id, ex.Message);
                unreadable.Add(row);
            }
        }
        if (unreadable.Count > 0)
            await RecordAsync(unreadable, token, SendResult.Fail("the stored payload cannot be read"), cancellationToken);
        try
        {
            await HoldBackAsync(batch, token, now, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // The send-time check is a refinement: when it cannot be made, the batch goes as routed (and a failure here must
            // not leave the rows in Sending until their lease expires).
            LogHoldBackFailed(ex);
        }
        if (batch.Count == 0) return;
        var result = await SendAsync(first.Receiver, receiver, batch, cancellationToken);
        if (receiver is not null && receiver.EffectiveMinInterval > TimeSpan.Zero)
        {
            // The interval counts from when the receiver had this message, not from when it was started: arrivals stay apart too.
            var free = time.GetUtcNow().UtcDateTime + receiver.EffectiveMinInterval;
            await using var db = dbFactory.CreateDbContext();
            await db.Set<ReceiverGateRecord>().Where(g => g.Name == first.Receiver && g.NextSendAt < free)
                .ExecuteUpdateAsync(s => s.SetProperty(g => g.NextSendAt, free), CancellationToken.None);
        }
        await RecordAsync(batch.Select(b => b.Row).ToList(), token, result, cancellationToken);
    }

    async Task<SendResult> SendAsync(string receiverName, ReceiverOptions? receiver, IReadOnlyList<Outgoing> batch, CancellationToken cancellationToken)
    {
        if (receiver is null) return SendResult.Fail($"receiver '{receiverName}' is no longer configured");
        if (!byKind.TryGetValue(receiver.Kind, out var sender)) return SendResult.Fail($"no sender for kind '{receiver.Kind}'");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(settings.SendTimeout);
        try
        {
            return await sender.SendAsync(receiverName, receiver, batch, timeout.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return SendResult.Retry($"no answer within {settings.SendTimeout}");
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or System.Net.Sockets.SocketException
                                       or MailKit.ProtocolException or MailKit.Net.Smtp.SmtpCommandException or MailKit.ServiceNotConnectedException
                                       or System.Security.Authentication.AuthenticationException or MailKit.Security.AuthenticationException)
        {
            return SendResult.Retry(ex.Message);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // A failure nobody foresaw still counts as an attempt, so the retry budget (and dead-lettering) bounds it.
            return SendResult.Retry($"{ex.GetType().Name}: {ex.Message}");
        }
    }

    /// <summary>
    /// A silence or maintenance window that began after routing (during the group wait, a rate-limit wait or a retry)
    /// still holds a firing notification back: those rows become silenced and leave the batch. Resolved ones still go
    /// (the receiver heard it fire).
    /// </summary>
    async Task HoldBackAsync(List<Outgoing> batch, string token, DateTime now, CancellationToken cancellationToken)
    {
        if (!batch.Any(b => b.Payload.State == "firing")) return;
        var held = new List<(Outgoing Item, string Reason)>();
        var repeats = batch.Where(b => b.Row.Sequence > 0).Select(b => b.Row.TransitionId).Distinct().ToList();
        if (repeats.Count > 0)
        {
            // A repeat or late firing whose episode resolved since it was written would arrive after the resolved message.
            await using var db = dbFactory.CreateDbContext();
            var transitions = db.Set<AlertTransitionRecord>();
            var over = await (from f in transitions.AsNoTracking()
                              where repeats.Contains(f.Id)
                              join r in transitions.AsNoTracking() on new { f.RuleId, f.Fingerprint, f.Episode } equals new { r.RuleId, r.Fingerprint, r.Episode }
                              where r.Kind == AlertTransitionKinds.Resolved
                              select f.Id).ToListAsync(cancellationToken);
            held.AddRange(batch.Where(b => b.Row.Sequence > 0 && over.Contains(b.Row.TransitionId)).Select(b => (b, "resolved before this repeat was sent")));
        }
        var active = await silences.ActiveAsync(now, cancellationToken);
        var open = settings.SilenceMaintenanceWindows ? await windows.GetAsync(cancellationToken) : [];
        foreach (var o in batch.Where(b => b.Payload.State == "firing" && held.All(h => h.Item != b)))
            if (SilenceStore.HeldBackBy(o.Payload.Labels, active, open, now) is { } reason)
                held.Add((o, reason));
        foreach (var (o, reason) in held)
        {
            await using var db = dbFactory.CreateDbContext();
            await db.Set<NotificationRecord>().Where(n => n.Id == o.Row.Id && n.State == NotificationStates.Sending && n.LeaseOwner == token)
                .ExecuteUpdateAsync(s => s.SetProperty(n => n.State, NotificationStates.Silenced).SetProperty(n => n.LastError, Clip(reason))
                    .SetProperty(n => n.LeaseOwner, (string?)null).SetProperty(n => n.LeaseUntil, (DateTime?)null), cancellationToken);
            batch.Remove(o);
            LogHeldBack(o.Row.Id, reason);
        }
    }

    /// <summary>Takes the receiver's send slot; null when taken, else the time the slot frees.</summary>
    async Task<DateTime?> TakeGateAsync(string name, DateTime now, TimeSpan interval, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 3; attempt++)
        {
            await using var db = dbFactory.CreateDbContext();
            var took = await db.Set<ReceiverGateRecord>().Where(g => g.Name == name && g.NextSendAt <= now)
                .ExecuteUpdateAsync(s => s.SetProperty(g => g.NextSendAt, now + interval), cancellationToken);
            if (took == 1) return null;
            var busy = await db.Set<ReceiverGateRecord>().AsNoTracking().Where(g => g.Name == name).Select(g => (DateTime?)g.NextSendAt).SingleOrDefaultAsync(cancellationToken);
            if (busy is { } at) return at;
            db.Set<ReceiverGateRecord>().Add(new ReceiverGateRecord { Name = name, NextSendAt = now + interval });
            try
            {
                await db.SaveChangesAsync(cancellationToken);
                return null;
            }
            catch (DbUpdateException)
            {
                // Another replica created the gate first: take it the normal way.
            }
        }
        return now + interval;
    }

    /// <summary>
    /// Sends a test message to <paramref name="receiverName"/> at once, outside the outbox (nothing is stored or retried):
    /// the receivers API's test-send. Null when no such receiver is configured.
    /// </summary>
    public async Task<SendResult?> TestSendAsync(string receiverName, string requestedBy, CancellationToken cancellationToken)
    {
        if (!settings.Receivers.TryGetValue(receiverName, out var receiver)) return null;
        var now = time.GetUtcNow().UtcDateTime;
        var labels = new Dictionary<string, string> { ["alertname"] = "fleet-test", ["host"] = "fleet-test" };
        var payload = new NotificationPayload(0, "fleet-test", "firing", "info", labels,
            new Dictionary<string, string> { ["summary"] = $"Test message from Fleet to receiver '{receiverName}', requested by {requestedBy}. Nothing is wrong." },
            0, now, "test", 0);
        var row = new NotificationRecord { Id = 0, Receiver = receiverName, State = NotificationStates.Sending, CreatedAt = now, NextAttemptAt = now };
        return await SendAsync(receiverName, receiver, [new Outgoing(row, payload)], cancellationToken);
    }

    async Task RecordAsync(List<NotificationRecord> rows, string token, SendResult result, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var ids = rows.Select(r => r.Id).ToList();
        await using var db = dbFactory.CreateDbContext();
        var mine = db.Set<NotificationRecord>().Where(n => ids.Contains(n.Id) && n.State == NotificationStates.Sending && n.LeaseOwner == token);
        // The attempt still counts when the process stops mid-record: cancellation ends the wait, not the bookkeeping.
        if (result.Delivered)
        {
            var marked = await mine.ExecuteUpdateAsync(s => s.SetProperty(n => n.State, NotificationStates.Sent).SetProperty(n => n.SentAt, now)
                .SetProperty(n => n.LeaseOwner, (string?)null).SetProperty(n => n.LeaseUntil, (DateTime?)null).SetProperty(n => n.LastError, (string?)null), CancellationToken.None);
            if (marked < rows.Count) LogLeaseLost(rows[0].Id, rows.Count - marked);
            LogSent(rows[0].Id, rows.Count, rows[0].Receiver, rows.Max(r => r.Attempts));
            CrashPoints.Reached(CrashPoints.NotificationSent);
            return;
        }
        var error = Clip(CleanError(result.Error ?? "failed", rows[0].Receiver));
        var dead = rows.Where(r => result.Permanent || r.Attempts >= settings.MaxAttempts).ToList();
        if (dead.Count > 0)
        {
            var deadIds = dead.Select(r => r.Id).ToList();
            await using var tx = await db.Database.BeginTransactionAsync(CancellationToken.None);
            var marked = await mine.Where(n => deadIds.Contains(n.Id)).ExecuteUpdateAsync(s => s.SetProperty(n => n.State, NotificationStates.Dead).SetProperty(n => n.LastError, error)
                .SetProperty(n => n.LeaseOwner, (string?)null).SetProperty(n => n.LeaseUntil, (DateTime?)null), CancellationToken.None);
            if (marked < dead.Count)
            {
                // Some lease was lost: only audit what this holder marked.
                LogLeaseLost(dead[0].Id, dead.Count - marked);
                var stillMine = await db.Set<NotificationRecord>().AsNoTracking().Where(n => deadIds.Contains(n.Id) && n.State == NotificationStates.Dead && n.LastError == error)
                    .Select(n => n.Id).ToListAsync(CancellationToken.None);
                dead = dead.Where(r => stillMine.Contains(r.Id)).ToList();
            }
            foreach (var row in dead)
            {
                var payload = TryPayload(row.PayloadJson);
                audit.Add(db, Actor.System("notifications"), "notification.dead", $"notification/{row.Id}", payload?.Host ?? "",
                    new Dictionary<string, string?>
                    {
                        ["receiver"] = row.Receiver, ["alert"] = payload?.Alert, ["state"] = payload?.State,
                        ["transition"] = row.TransitionId.ToString(System.Globalization.CultureInfo.InvariantCulture),
                        ["attempts"] = row.Attempts.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    }, outcome: error);
                LogDead(row.Id, row.Receiver, row.Attempts, error);
            }
            await db.SaveChangesAsync(CancellationToken.None);
            await tx.CommitAsync(CancellationToken.None);
        }
        var retry = rows.Except(dead).ToList();
        if (retry.Count == 0) return;
        var retryIds = retry.Select(r => r.Id).ToList();
        var delay = Backoff(settings, retry.Max(r => r.Attempts));
        // A receiver's Retry-After is honoured up to an hour: a broken proxy answering "years" must not silence it for good.
        if (result.RetryAfter is { } after && after > delay) delay = after > MaxRetryAfter ? MaxRetryAfter : after;
        var next = now + delay;
        var scheduled = await mine.Where(n => retryIds.Contains(n.Id)).ExecuteUpdateAsync(s => s.SetProperty(n => n.State, NotificationStates.Pending).SetProperty(n => n.NextAttemptAt, next)
            .SetProperty(n => n.LastError, error).SetProperty(n => n.LeaseOwner, (string?)null).SetProperty(n => n.LeaseUntil, (DateTime?)null), CancellationToken.None);
        if (result.RetryAfter is not null)
        {
            // The receiver asked for a pause: nothing else goes to it before then either.
            var receiver = retry[0].Receiver;
            await db.Set<ReceiverGateRecord>().Where(g => g.Name == receiver && g.NextSendAt < next)
                .ExecuteUpdateAsync(s => s.SetProperty(g => g.NextSendAt, next), CancellationToken.None);
        }
        if (scheduled < retry.Count) LogLeaseLost(retry[0].Id, retry.Count - scheduled);
        LogRetry(retry[0].Id, retry.Count, retry[0].Receiver, retry.Max(r => r.Attempts), delay, error);
        WakeSweeper();
    }

    static readonly TimeSpan MaxRetryAfter = TimeSpan.FromHours(1);

    static NotificationPayload? TryPayload(string json)
    {
        try { return System.Text.Json.JsonSerializer.Deserialize<NotificationPayload>(json, NotificationPayload.Json); }
        catch (System.Text.Json.JsonException) { return null; }
    }

    static string Clip(string text, int max = 2000) => text.Length <= max ? text : text[..max];

    /// <summary>A receiver's error as stored, logged, audited and alerted on: its secrets masked, on one line.</summary>
    string CleanError(string error, string receiverName)
    {
        var text = settings.Receivers.TryGetValue(receiverName, out var receiver) ? ReceiversApi.Redact(error, receiver) : error;
        return string.Create(text.Length, text, (span, t) =>
        {
            for (var i = 0; i < t.Length; i++) span[i] = char.IsControl(t[i]) ? ' ' : t[i];
        });
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Notification {Id}: not claimable (sent, leased by another, or not due yet)")]
    partial void LogNothingToDo(long id);

    [LoggerMessage(Level = LogLevel.Information, Message = "Notification {Id} (+{Count} in the message) sent to {Receiver} (attempt {Attempt})")]
    partial void LogSent(long id, int count, string receiver, int attempt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Notification {Id} (+{Count} in the message) to {Receiver}: attempt {Attempt} failed, retrying in {Delay}: {Error}")]
    partial void LogRetry(long id, int count, string receiver, int attempt, TimeSpan delay, string error);

    [LoggerMessage(Level = LogLevel.Error, Message = "Notification {Id} to {Receiver} is dead after {Attempts} attempts: {Error}")]
    partial void LogDead(long id, string receiver, int attempts, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Notification {Id}: {Count} lease(s) expired before the result was recorded (another replica took them over)")]
    partial void LogLeaseLost(long id, int count);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Receiver {Receiver} is rate limited: {Count} due notification(s) wait until {NotBefore:O} and go out together")]
    partial void LogRateLimited(string receiver, int count, DateTime notBefore);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The send-time silence check failed; the batch goes as routed")]
    partial void LogHoldBackFailed(Exception ex);

    [LoggerMessage(Level = LogLevel.Information, Message = "Notification {Id} is held back at send time: {Reason}")]
    partial void LogHeldBack(long id, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Notification {Id}: the stored payload cannot be read ({Error}); it is dead")]
    partial void LogUnreadable(long id, string error);
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
    readonly ConcurrentDictionary<long, (DateTime At, DateTime? Marker)> handedOut = new();

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
            .OrderBy(n => n.Id).Select(n => new { n.Id, Marker = n.State == NotificationStates.Pending ? (DateTime?)n.NextAttemptAt : n.LeaseUntil })
            .Take(500).ToListAsync(cancellationToken);
        // A row handed out moments ago for the same due time is most likely still in the queue: give the consumer the lease
        // time before asking again. A row whose due time moved (rate limit, retry) is a new hand-out.
        var handOut = due.Where(d => !handedOut.TryGetValue(d.Id, out var h) || h.Marker != d.Marker || now - h.At >= settings.Lease).ToList();
        foreach (var d in handOut)
        {
            await NotificationDue.SendAsync(bus, settings.Queue, d.Id, cancellationToken);
            handedOut[d.Id] = (now, d.Marker);
            LogRepublished(d.Id);
        }
        var dueIds = due.Select(d => d.Id).ToHashSet();
        foreach (var id in handedOut.Keys.Where(k => !dueIds.Contains(k))) handedOut.TryRemove(id, out _);

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
