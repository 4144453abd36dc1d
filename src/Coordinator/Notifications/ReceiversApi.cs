using System.Globalization;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Notifications;

/// <summary>
/// The Receivers service: the configured receivers with redacted targets, the routes that name them and their delivery
/// stats, and a test-send (audited as <c>receiver.tested</c>). No secret (webhook URL path or token, HMAC secret, SMTP
/// password) ever leaves this class, in answers or in the audit row.
/// </summary>
sealed class ReceiversApi(
    IDbContextFactory<FleetDbContext> dbFactory, NotificationDelivery delivery, IOptions<NotificationsOptions> options, AuditLog audit, TimeProvider time)
    : Protocol.V1.Receivers.ReceiversBase
{
    readonly NotificationsOptions settings = options.Value;

    public override async Task<ListReceiversResponse> ListReceivers(ListReceiversRequest request, ServerCallContext context)
    {
        var names = settings.Receivers.Keys.Order(StringComparer.Ordinal).ToList();
        var stats = await StatsAsync(names, context.CancellationToken);
        var response = new ListReceiversResponse();
        response.Receivers.AddRange(names.Select(n => ToProto(n, settings.Receivers[n], stats[n])));
        return response;
    }

    public override async Task<Protocol.V1.Receiver> GetReceiver(GetReceiverRequest request, ServerCallContext context)
    {
        var (name, receiver) = Find(request.Name);
        var stats = await StatsAsync([name], context.CancellationToken);
        return ToProto(name, receiver, stats[name]);
    }

    public override async Task<TestReceiverResponse> TestReceiver(TestReceiverRequest request, ServerCallContext context)
    {
        var (name, receiver) = Find(request.Name);
        var actor = context.Actor();
        var target = Target(receiver);
        var started = time.GetTimestamp();
        SendResult? result;
        try
        {
            result = await delivery.TestSendAsync(name, actor.Name, context.CancellationToken);
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The caller hung up (or its deadline passed) mid-send: the message may have gone out, so it is audited anyway.
            await AuditAsync(actor, name, receiver, target, delivered: false, ElapsedMs(started), "cancelled by the caller before the receiver answered");
            throw;
        }
        if (result is null) throw NotFound(name); // removed between Find and the send: only with a reloaded configuration
        var error = result.Delivered ? "" : Redact(result.Error ?? "failed", receiver);
        var response = new TestReceiverResponse
        {
            Name = name, Kind = receiver.Kind, Target = target, Delivered = result.Delivered, Error = error, ElapsedMs = ElapsedMs(started),
            RetryAfter = result.RetryAfter is { } after && after > TimeSpan.Zero ? Duration.FromTimeSpan(after) : null,
        };
        await AuditAsync(actor, name, receiver, target, result.Delivered, response.ElapsedMs, result.Delivered ? "ok" : error);
        return response;
    }

    long ElapsedMs(long started) => (long)time.GetElapsedTime(started).TotalMilliseconds;

    /// <summary>The message went out (or not) whatever the caller does now: the row is written even if it hung up.</summary>
    async Task AuditAsync(Actor actor, string name, ReceiverOptions receiver, string target, bool delivered, long elapsedMs, string outcome)
    {
        await using var db = dbFactory.CreateDbContext();
        audit.Add(db, actor, "receiver.tested", target: $"receiver:{name}", parameters: new Dictionary<string, string?>
        {
            ["kind"] = receiver.Kind, ["target"] = target, ["delivered"] = delivered ? "true" : "false",
            ["elapsed_ms"] = elapsedMs.ToString(CultureInfo.InvariantCulture),
        }, outcome: outcome);
        await db.SaveChangesAsync(CancellationToken.None);
    }

    (string Name, ReceiverOptions Receiver) Find(string name)
    {
        if (string.IsNullOrWhiteSpace(name)) throw ApiArguments.Invalid("name: is required (a receiver of Fleet:Notifications:Receivers)");
        return settings.Receivers.TryGetValue(name, out var receiver) ? (name, receiver) : throw NotFound(name);
    }

    RpcException NotFound(string name)
    {
        var known = settings.Receivers.Count == 0 ? "none configured" : "known: " + string.Join(", ", settings.Receivers.Keys.Order(StringComparer.Ordinal));
        var shown = name.Length > 128 ? name[..128] + "…" : name;
        return new RpcException(new Status(StatusCode.NotFound, $"name: receiver '{shown}' is not configured ({known})"));
    }

    /// <summary>Counts by state, last sent time and last error of each receiver's notifications.</summary>
    async Task<Dictionary<string, ReceiverStats>> StatsAsync(List<string> names, CancellationToken cancellationToken)
    {
        var stats = names.ToDictionary(n => n, _ => new ReceiverStats(), StringComparer.Ordinal);
        if (names.Count == 0) return stats;
        await using var db = dbFactory.CreateDbContext();
        var rows = db.Set<NotificationRecord>().AsNoTracking().Where(n => names.Contains(n.Receiver));
        // One grouped pass over the receivers' rows for the counts and the last delivery; NotificationRetention keeps the
        // table to the retention window (plus still-open alert episodes), so this stays bounded.
        var counts = await rows.GroupBy(n => new { n.Receiver, n.State })
            .Select(g => new { g.Key.Receiver, g.Key.State, Count = g.LongCount(), LastSent = g.Max(n => n.SentAt) }).ToListAsync(cancellationToken);
        foreach (var c in counts)
        {
            var s = stats[c.Receiver];
            switch (c.State)
            {
                case NotificationStates.Pending: s.Pending = c.Count; break;
                case NotificationStates.Sending: s.Sending = c.Count; break;
                case NotificationStates.Sent:
                    s.Sent = c.Count;
                    if (c.LastSent is { } at) s.LastSentAt = Timestamp.FromDateTime(DateTime.SpecifyKind(at, DateTimeKind.Utc));
                    break;
                case NotificationStates.Dead: s.Dead = c.Count; break;
                case NotificationStates.Silenced: s.Silenced = c.Count; break;
            }
        }
        // The newest failure per receiver, through the (State, NextAttemptAt) index: failing rows are few, sent ones many.
        // A sent row has its error cleared; a silenced row keeps the silence in LastError, which is not a failure.
        var newestFailures = await rows
            .Where(n => (n.State == NotificationStates.Pending || n.State == NotificationStates.Sending || n.State == NotificationStates.Dead) && n.LastError != null)
            .GroupBy(n => n.Receiver).Select(g => g.Max(n => n.Id)).ToListAsync(cancellationToken);
        if (newestFailures.Count > 0)
        {
            var failures = await db.Set<NotificationRecord>().AsNoTracking().Where(n => newestFailures.Contains(n.Id))
                .Select(n => new { n.Id, n.Receiver, n.LastError }).ToListAsync(cancellationToken);
            foreach (var f in failures)
            {
                stats[f.Receiver].LastError = Redact(f.LastError!, settings.Receivers[f.Receiver]);
                stats[f.Receiver].LastErrorNotificationId = f.Id;
            }
        }
        return stats;
    }

    Protocol.V1.Receiver ToProto(string name, ReceiverOptions r, ReceiverStats stats)
    {
        var receiver = new Protocol.V1.Receiver
        {
            Name = name, Kind = r.Kind, Target = Target(r), SendResolved = r.SendResolved, Stats = stats,
            Channel = r.Kind == ReceiverKinds.Slack ? r.Channel ?? "" : "",
        };
        if (r.Kind == ReceiverKinds.Email)
        {
            receiver.To.AddRange(r.To);
            receiver.From = r.From ?? "";
            receiver.Security = r.Security;
        }
        for (var i = 0; i < settings.Routes.Count; i++)
        {
            var route = settings.Routes[i];
            if (!route.Receivers.Contains(name, StringComparer.Ordinal)) continue;
            var proto = new ReceiverRoute { Index = i };
            proto.Matchers.AddRange(route.Matchers);
            proto.Severities.AddRange(route.Severities);
            receiver.Routes.Add(proto);
        }
        return receiver;
    }

    /// <summary>What may be shown of where a receiver sends: scheme and host of a URL (never its path, query or user info), or the SMTP server.</summary>
    internal static string Target(ReceiverOptions r) => r.Kind switch
    {
        ReceiverKinds.Email => $"{r.Host}:{r.Port.ToString(CultureInfo.InvariantCulture)}",
        _ when Uri.TryCreate(r.Url, UriKind.Absolute, out var uri) => $"{uri.Scheme}://{uri.Host}{(uri.IsDefaultPort ? "" : ":" + uri.Port.ToString(CultureInfo.InvariantCulture))}",
        _ => "",
    };

    /// <summary>Masks the receiver's secrets (URL path and query, HMAC secret, SMTP password) should a sender's error quote them.</summary>
    internal static string Redact(string text, ReceiverOptions r)
    {
        if (Uri.TryCreate(r.Url, UriKind.Absolute, out var uri))
        {
            text = text.Replace(r.Url!, Target(r) + "/" + AuditLog.Redacted, StringComparison.OrdinalIgnoreCase);
            if (uri.PathAndQuery.Length > 1) text = text.Replace(uri.PathAndQuery, "/" + AuditLog.Redacted, StringComparison.OrdinalIgnoreCase);
        }
        foreach (var secret in new[] { r.Secret, r.Password }.Where(s => !string.IsNullOrEmpty(s)))
            text = text.Replace(secret!, AuditLog.Redacted, StringComparison.Ordinal);
        return AuditLog.RedactText(text);
    }
}
