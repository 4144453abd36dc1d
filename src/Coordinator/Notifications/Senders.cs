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
public sealed class SlackSender(IHttpClientFactory clients, TimeProvider time) : INotificationSender
{
    public string Kind => ReceiverKinds.Slack;

    public Task<SendResult> SendAsync(string receiverName, ReceiverOptions receiver, NotificationRecord notification, NotificationPayload payload, CancellationToken cancellationToken)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, receiver.Url)
        {
            Content = new StringContent(Message(payload, receiver.Channel).ToJsonString(), Encoding.UTF8, "application/json"),
        };
        return HttpResults.SendAsync(clients, request, time, cancellationToken);
    }

    public static JsonObject Message(NotificationPayload p, string? channel)
    {
        var firing = p.State == "firing";
        var title = $"{(firing ? "FIRING" : "RESOLVED")}: {p.Alert}{(p.Host.Length > 0 ? " on " + p.Host : "")}";
        var fields = new JsonArray();
        void Field(string name, string value)
        {
            if (value.Length > 0) fields.Add(new JsonObject { ["type"] = "mrkdwn", ["text"] = $"*{name}*\n{value}" });
        }
        Field("Host", p.Host);
        Field("Value", p.Annotation("value").Length > 0 ? p.Annotation("value") : p.Value.ToString("0.####", CultureInfo.InvariantCulture));
        Field("Threshold", p.Annotation("threshold"));
        Field("Severity", p.Severity);
        var blocks = new JsonArray
        {
            new JsonObject { ["type"] = "header", ["text"] = new JsonObject { ["type"] = "plain_text", ["text"] = Clip(title, 150) } },
            new JsonObject { ["type"] = "section", ["text"] = new JsonObject { ["type"] = "mrkdwn", ["text"] = Clip(Summary(p), 3000) } },
            new JsonObject { ["type"] = "section", ["fields"] = fields },
        };
        var runbook = p.Annotation("runbook");
        if (runbook.Length > 0)
            blocks.Add(new JsonObject
            {
                ["type"] = "context",
                ["elements"] = new JsonArray { new JsonObject { ["type"] = "mrkdwn", ["text"] = $"<{runbook}|Runbook>" } },
            });
        var message = new JsonObject { ["text"] = title, ["blocks"] = blocks };
        if (!string.IsNullOrEmpty(channel)) message["channel"] = channel;
        return message;
    }

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

    public Task<SendResult> SendAsync(string receiverName, ReceiverOptions receiver, NotificationRecord notification, NotificationPayload payload, CancellationToken cancellationToken)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new
        {
            notificationId = notification.Id, receiver = receiverName, payload.Alert, payload.State, payload.Severity, payload.Labels,
            payload.Annotations, payload.Value, payload.Time, payload.Fingerprint, payload.Episode, payload.TransitionId,
        }, NotificationPayload.Json);
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
        var request = new HttpRequestMessage(HttpMethod.Post, receiver.Url) { Content = content };
        request.Headers.Add(SignatureHeader, Signature(receiver.Secret!, body));
        request.Headers.Add(IdempotencyHeader, notification.Id.ToString(CultureInfo.InvariantCulture));
        return HttpResults.SendAsync(clients, request, time, cancellationToken);
    }

    public static string Signature(string secret, ReadOnlySpan<byte> body) =>
        "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), body));
}

/// <summary>Email over SMTP with MailKit: plain text and HTML alternatives; none/starttls/ssl per receiver.</summary>
public sealed class EmailSender : INotificationSender
{
    public string Kind => ReceiverKinds.Email;

    public static SecureSocketOptions? SocketOptions(string security) => security.ToLowerInvariant() switch
    {
        "none" => SecureSocketOptions.None,
        "starttls" => SecureSocketOptions.StartTls,
        "ssl" => SecureSocketOptions.SslOnConnect,
        _ => null,
    };

    public async Task<SendResult> SendAsync(string receiverName, ReceiverOptions receiver, NotificationRecord notification, NotificationPayload payload, CancellationToken cancellationToken)
    {
        using var smtp = new SmtpClient();
        await smtp.ConnectAsync(receiver.Host!, receiver.Port, SocketOptions(receiver.Security)!.Value, cancellationToken);
        if (!string.IsNullOrEmpty(receiver.Username))
            await smtp.AuthenticateAsync(receiver.Username, receiver.Password ?? "", cancellationToken);
        try
        {
            await smtp.SendAsync(Message(receiver, notification, payload), cancellationToken);
        }
        catch (SmtpCommandException ex) when ((int)ex.StatusCode is >= 500 and < 600)
        {
            return SendResult.Fail($"SMTP {(int)ex.StatusCode}: {ex.Message}");
        }
        await smtp.DisconnectAsync(true, cancellationToken);
        return SendResult.Ok;
    }

    public static MimeMessage Message(ReceiverOptions receiver, NotificationRecord notification, NotificationPayload p)
    {
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
        };
        rows.RemoveAll(r => r.Item2.Length == 0);
        var summary = p.Annotation("summary").Length > 0 ? p.Annotation("summary") : p.Alert;
        var text = new StringBuilder().AppendLine(summary).AppendLine();
        foreach (var (k, v) in rows) text.Append(k).Append(": ").AppendLine(v);
        var html = new StringBuilder().Append("<p>").Append(WebUtility.HtmlEncode(summary)).Append("</p><table>");
        foreach (var (k, v) in rows)
        {
            var cell = k == "Runbook" && Uri.TryCreate(v, UriKind.Absolute, out _)
                ? $"<a href=\"{WebUtility.HtmlEncode(v)}\">{WebUtility.HtmlEncode(v)}</a>"
                : WebUtility.HtmlEncode(v);
            html.Append("<tr><th align=\"left\">").Append(WebUtility.HtmlEncode(k)).Append("</th><td>").Append(cell).Append("</td></tr>");
        }
        html.Append("</table>");
        message.Body = new BodyBuilder { TextBody = text.ToString(), HtmlBody = html.ToString() }.ToMessageBody();
        return message;
    }
}
