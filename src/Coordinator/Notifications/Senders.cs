using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MailKit.Net.Smtp;
using MailKit.Security;
using MimeKit;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Notifications;

/// <summary>How an HTTP receiver's answer maps to a <see cref="SendResult"/> (429/5xx/408: retry, honouring Retry-After; other 4xx: permanent).</summary>
static class HttpResults
{
    public const string ClientName = "fleet-notifications";

    public static async Task<SendResult> SendAsync(IHttpClientFactory clients, HttpRequestMessage request, TimeProvider time, CancellationToken cancellationToken)
    {
        using var client = clients.CreateClient(ClientName);
        using var response = await client.SendAsync(request, cancellationToken);
        if (response.IsSuccessStatusCode) return SendResult.Ok;
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        var error = $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}: {(body.Length > 300 ? body[..300] : body)}";
        var code = (int)response.StatusCode;
        if (code == 429 || code == 408 || code >= 500) return SendResult.Retry(error, RetryAfter(response.Headers.RetryAfter, time));
        return SendResult.Fail(error);
    }

    static TimeSpan? RetryAfter(RetryConditionHeaderValue? header, TimeProvider time) =>
        header?.Delta ?? (header?.Date is { } date ? date - time.GetUtcNow() : null);
}

/// <summary>Slack incoming webhook: a Block Kit message (header with alert and state; host, value, threshold, severity; runbook link).</summary>
public sealed class SlackSender(IHttpClientFactory clients, IOptions<NotificationsOptions> options, TimeProvider time) : INotificationSender
{
    public string Kind => ReceiverKinds.Slack;

    public Task<SendResult> SendAsync(string receiverName, ReceiverOptions receiver, IReadOnlyList<Outgoing> batch, CancellationToken cancellationToken)
    {
        var message = batch.Count == 1 ? Message(batch[0].Payload, receiver.Channel, options.Value) : Message(batch.Select(b => b.Payload).ToList(), receiver.Channel);
        var request = new HttpRequestMessage(HttpMethod.Post, receiver.Url)
        {
            Content = new StringContent(message.ToJsonString(), Encoding.UTF8, "application/json"),
        };
        return HttpResults.SendAsync(clients, request, time, cancellationToken);
    }

    /// <summary>Several alerts in one message (a group, or what waited for the rate limit): a header with the counts, a section per group.</summary>
    public static JsonObject Message(IReadOnlyList<NotificationPayload> alerts, string? channel)
    {
        var firing = alerts.Count(a => a.State == "firing");
        var resolved = alerts.Count - firing;
        var title = string.Join(", ", new[] { firing > 0 ? $"FIRING: {firing}" : "", resolved > 0 ? $"RESOLVED: {resolved}" : "" }.Where(t => t.Length > 0))
                    + $" alert{(alerts.Count == 1 ? "" : "s")}";
        var blocks = new JsonArray
        {
            new JsonObject { ["type"] = "header", ["text"] = new JsonObject { ["type"] = "plain_text", ["text"] = Clip(title, 150) } },
        };
        var groups = alerts.GroupBy(a => a.Alert).ToList();
        foreach (var group in groups.Take(45))
        {
            var lines = new StringBuilder();
            lines.Append('*').Append(group.Key).Append("* (").Append(group.First().Severity).Append(")\n");
            foreach (var a in group)
            {
                var value = a.Annotation("value").Length > 0 ? a.Annotation("value") : a.Value.ToString("0.####", CultureInfo.InvariantCulture);
                lines.Append("• ").Append(a.State == "firing" ? "FIRING" : "RESOLVED").Append(' ')
                     .Append(a.Host.Length > 0 ? a.Host : "-").Append(": ").Append(Summary(a)).Append(" (value ").Append(value).Append(")\n");
            }
            var runbook = group.First().Annotation("runbook");
            if (runbook.Length > 0) lines.Append('<').Append(runbook).Append("|Runbook>");
            blocks.Add(new JsonObject { ["type"] = "section", ["text"] = new JsonObject { ["type"] = "mrkdwn", ["text"] = Clip(lines.ToString(), 3000) } });
        }
        if (groups.Count > 45)
            blocks.Add(new JsonObject
            {
                ["type"] = "context",
                ["elements"] = new JsonArray { new JsonObject { ["type"] = "mrkdwn", ["text"] = $"…and {groups.Count - 45} more rules: see `fleetctl alerts`" } },
            });
        var message = new JsonObject { ["text"] = title, ["blocks"] = blocks };
        if (!string.IsNullOrEmpty(channel)) message["channel"] = channel;
        return message;
    }

    public static JsonObject Message(NotificationPayload p, string? channel, NotificationsOptions? settings = null)
    {
        var link = settings?.HostLink(p.Host, p.Labels.TryGetValue("agent_id", out var agent) ? agent : "");
        var firing = p.State == "firing";
        var title = $"{(firing ? "FIRING" : "RESOLVED")}: {p.Alert}{(p.Host.Length > 0 ? " on " + p.Host : "")}";
        var fields = new JsonArray();
        void Field(string name, string value)
        {
            if (value.Length > 0) fields.Add(new JsonObject { ["type"] = "mrkdwn", ["text"] = $"*{name}*\n{value}" });
        }
        Field("Host", link is null ? p.Host : $"<{link}|{p.Host}>");
        Field("Value", p.Annotation("value").Length > 0 ? p.Annotation("value") : p.Value.ToString("0.####", CultureInfo.InvariantCulture));
        Field("Threshold", p.Annotation("threshold"));
        Field("Severity", p.Severity);
        var blocks = new JsonArray
        {
            new JsonObject { ["type"] = "header", ["text"] = new JsonObject { ["type"] = "plain_text", ["text"] = Clip(title, 150) } },
            new JsonObject { ["type"] = "section", ["text"] = new JsonObject { ["type"] = "mrkdwn", ["text"] = Clip(Summary(p), 3000) } },
            new JsonObject { ["type"] = "section", ["fields"] = fields },
        };
        var context = new JsonArray();
        var runbook = p.Annotation("runbook");
        if (runbook.Length > 0) context.Add(new JsonObject { ["type"] = "mrkdwn", ["text"] = $"<{runbook}|Runbook>" });
        if (Reminder(p) is { } reminder) context.Add(new JsonObject { ["type"] = "mrkdwn", ["text"] = reminder });
        if (context.Count > 0) blocks.Add(new JsonObject { ["type"] = "context", ["elements"] = context });
        var message = new JsonObject { ["text"] = title, ["blocks"] = blocks };
        if (!string.IsNullOrEmpty(channel)) message["channel"] = channel;
        return message;
    }

    /// <summary>For a repeat (or a firing held back by a silence that ended): since when it fires.</summary>
    public static string? Reminder(NotificationPayload p) => p.Sequence > 0 && p.State == "firing"
        ? $"Still firing since {(p.FiringSince ?? p.Time).ToString("u", CultureInfo.InvariantCulture)} (notification {p.Sequence + 1})"
        : null;

    static string Summary(NotificationPayload p)
    {
        var summary = p.Annotation("summary").Length > 0 ? p.Annotation("summary") : p.Alert;
        return p.State == "firing" ? summary : $"Resolved: {summary}";
    }

    static string Clip(string text, int max) => text.Length <= max ? text : text[..(max - 1)] + "…";
}

/// <summary>Generic webhook: the payload as JSON, signed <c>X-Fleet-Signature: sha256=HEX(HMAC(secret, body))</c>, with <c>Idempotency-Key</c>.</summary>
public sealed class WebhookSender(IHttpClientFactory clients, TimeProvider time) : INotificationSender
{
    public const string SignatureHeader = "X-Fleet-Signature", IdempotencyHeader = "Idempotency-Key";

    public string Kind => ReceiverKinds.Webhook;

    /// <summary>
    /// One alert: the notification as a JSON object (Idempotency-Key: its id). Several (MaxBatch above 1):
    /// <c>{"receiver": …, "notifications": [ … ]}</c> with the ids joined by commas as the key.
    /// </summary>
    public Task<SendResult> SendAsync(string receiverName, ReceiverOptions receiver, IReadOnlyList<Outgoing> batch, CancellationToken cancellationToken)
    {
        object Item(Outgoing o) => new
        {
            notificationId = o.Row.Id, receiver = receiverName, o.Payload.Alert, o.Payload.State, o.Payload.Severity, o.Payload.Labels,
            o.Payload.Annotations, o.Payload.Value, o.Payload.Time, o.Payload.Fingerprint, o.Payload.Episode, o.Payload.TransitionId,
            sequence = o.Payload.Sequence, firingSince = o.Payload.FiringSince,
        };
        var body = batch.Count == 1
            ? JsonSerializer.SerializeToUtf8Bytes(Item(batch[0]), NotificationPayload.Json)
            : JsonSerializer.SerializeToUtf8Bytes(new { receiver = receiverName, notifications = batch.Select(Item).ToList() }, NotificationPayload.Json);
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
        var request = new HttpRequestMessage(HttpMethod.Post, receiver.Url) { Content = content };
        request.Headers.Add(SignatureHeader, Signature(receiver.Secret!, body));
        request.Headers.Add(IdempotencyHeader, string.Join(",", batch.Select(b => b.Row.Id.ToString(CultureInfo.InvariantCulture))));
        return HttpResults.SendAsync(clients, request, time, cancellationToken);
    }

    public static string Signature(string secret, ReadOnlySpan<byte> body) =>
        "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), body));
}

/// <summary>Email over SMTP with MailKit: plain text and HTML alternatives; none/starttls/ssl per receiver.</summary>
public sealed class EmailSender(IOptions<NotificationsOptions> options) : INotificationSender
{
    public string Kind => ReceiverKinds.Email;

    public static SecureSocketOptions? SocketOptions(string security) => security.ToLowerInvariant() switch
    {
        "none" => SecureSocketOptions.None,
        "starttls" => SecureSocketOptions.StartTls,
        "ssl" => SecureSocketOptions.SslOnConnect,
        _ => null,
    };

    public async Task<SendResult> SendAsync(string receiverName, ReceiverOptions receiver, IReadOnlyList<Outgoing> batch, CancellationToken cancellationToken)
    {
        var message = batch.Count == 1 ? Message(receiver, batch[0].Row, batch[0].Payload, options.Value) : Message(receiver, batch);
        using var smtp = new SmtpClient();
        await smtp.ConnectAsync(receiver.Host!, receiver.Port, SocketOptions(receiver.Security)!.Value, cancellationToken);
        if (!string.IsNullOrEmpty(receiver.Username))
            await smtp.AuthenticateAsync(receiver.Username, receiver.Password ?? "", cancellationToken);
        try
        {
            await smtp.SendAsync(message, cancellationToken);
        }
        catch (SmtpCommandException ex) when ((int)ex.StatusCode is >= 500 and < 600)
        {
            return SendResult.Fail($"SMTP {(int)ex.StatusCode}: {ex.Message}");
        }
        await smtp.DisconnectAsync(true, cancellationToken);
        return SendResult.Ok;
    }

    /// <summary>Several alerts in one email: subject with the counts, one line (text) or row (HTML) per alert.</summary>
    public static MimeMessage Message(ReceiverOptions receiver, IReadOnlyList<Outgoing> batch)
    {
        var firing = batch.Count(b => b.Payload.State == "firing");
        var resolved = batch.Count - firing;
        var rules = batch.Select(b => b.Payload.Alert).Distinct().ToList();
        var message = new MimeMessage();
        message.From.Add(MailboxAddress.Parse(receiver.From!));
        foreach (var to in receiver.To) message.To.Add(MailboxAddress.Parse(to));
        var counts = string.Join(" ", new[] { firing > 0 ? $"[FIRING:{firing}]" : "", resolved > 0 ? $"[RESOLVED:{resolved}]" : "" }.Where(t => t.Length > 0));
        message.Subject = $"{counts} {string.Join(", ", rules.Take(3))}{(rules.Count > 3 ? $" and {rules.Count - 3} more" : "")}";
        message.MessageId = $"fleet-notifications-{batch[0].Row.Id}-{batch.Count}@fleet";
        var text = new StringBuilder();
        var html = new StringBuilder().Append("<table><tr><th align=\"left\">State</th><th align=\"left\">Alert</th><th align=\"left\">Host</th><th align=\"left\">Severity</th><th align=\"left\">Value</th><th align=\"left\">Summary</th></tr>");
        foreach (var p in batch.Select(b => b.Payload))
        {
            var state = p.State == "firing" ? "FIRING" : "RESOLVED";
            var summary = p.Annotation("summary").Length > 0 ? p.Annotation("summary") : p.Alert;
            text.Append(state).Append(' ').Append(p.Alert).Append(" on ").Append(p.Host).Append(" (").Append(p.Severity).Append("): ").Append(summary);
            if (p.Annotation("runbook").Length > 0) text.Append(" - ").Append(p.Annotation("runbook"));
            text.AppendLine();
            html.Append("<tr>");
            foreach (var cell in new[] { state, p.Alert, p.Host, p.Severity, p.Annotation("value"), summary })
                html.Append("<td>").Append(WebUtility.HtmlEncode(cell)).Append("</td>");
            html.Append("</tr>");
        }
        html.Append("</table>");
        message.Body = new BodyBuilder { TextBody = text.ToString(), HtmlBody = html.ToString() }.ToMessageBody();
        return message;
    }

    public static MimeMessage Message(ReceiverOptions receiver, NotificationRecord notification, NotificationPayload p, NotificationsOptions? settings = null)
    {
        var link = settings?.HostLink(p.Host, p.Labels.TryGetValue("agent_id", out var agent) ? agent : "") ?? "";
        var state = p.State == "firing" ? "FIRING" : "RESOLVED";
        var message = new MimeMessage();
        message.From.Add(MailboxAddress.Parse(receiver.From!));
        foreach (var to in receiver.To) message.To.Add(MailboxAddress.Parse(to));
        message.Subject = $"[{state}] {p.Alert}{(p.Host.Length > 0 ? " on " + p.Host : "")} ({p.Severity})";
        message.MessageId = $"fleet-notification-{notification.Id}@fleet";
        var rows = new List<(string, string)>
        {
            ("Alert", p.Alert), ("State", state), ("Host", p.Host), ("Severity", p.Severity), ("Value", p.Annotation("value")),
            ("Threshold", p.Annotation("threshold")), ("Time", p.Time.ToString("u", CultureInfo.InvariantCulture)), ("Runbook", p.Annotation("runbook")),
            ("Host link", link),
        };
        if (SlackSender.Reminder(p) is { } reminder) rows.Add(("Note", reminder));
        rows.RemoveAll(r => r.Item2.Length == 0);
        var summary = p.Annotation("summary").Length > 0 ? p.Annotation("summary") : p.Alert;
        var text = new StringBuilder().AppendLine(summary).AppendLine();
        foreach (var (k, v) in rows) text.Append(k).Append(": ").AppendLine(v);
        var html = new StringBuilder().Append("<p>").Append(WebUtility.HtmlEncode(summary)).Append("</p><table>");
        foreach (var (k, v) in rows)
        {
            var cell = k is "Runbook" or "Host link" && Uri.TryCreate(v, UriKind.Absolute, out _)
                ? $"<a href=\"{WebUtility.HtmlEncode(v)}\">{WebUtility.HtmlEncode(v)}</a>"
                : WebUtility.HtmlEncode(v);
            html.Append("<tr><th align=\"left\">").Append(WebUtility.HtmlEncode(k)).Append("</th><td>").Append(cell).Append("</td></tr>");
        }
        html.Append("</table>");
        message.Body = new BodyBuilder { TextBody = text.ToString(), HtmlBody = html.ToString() }.ToMessageBody();
        return message;
    }
}
