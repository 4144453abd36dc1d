using System.ComponentModel.DataAnnotations;
using Fleet.Coordinator.Alerts;

namespace Fleet.Coordinator.Notifications;

/// <summary>Receivers, routes and delivery settings of the alert fan-out (section <c>Fleet:Notifications</c>).</summary>
public sealed class NotificationsOptions : IValidatableObject
{
    static bool LabelName(string name) => name.Length is > 0 and <= 128 && (char.IsAsciiLetter(name[0]) || name[0] == '_') && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    public const string Section = "Fleet:Notifications";

    /// <summary>Receivers by name.</summary>
    public Dictionary<string, ReceiverOptions> Receivers { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Every route whose matchers and severities match a transition adds its receivers (no route: nobody is notified).</summary>
    public List<RouteOptions> Routes { get; set; } = [];

    /// <summary>The queue the <see cref="NotificationDue"/> messages go to (one per fleet sharing a RabbitMQ).</summary>
    public string Queue { get; set; } = "fleet-notifications";

    /// <summary>The first retry waits this long, each next one twice as long, up to <see cref="RetryMax"/>.</summary>
    public TimeSpan RetryBase { get; set; } = TimeSpan.FromSeconds(2);

    public TimeSpan RetryMax { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Send attempts before a notification is dead.</summary>
    public int MaxAttempts { get; set; } = 8;

    /// <summary>One send (HTTP request or SMTP conversation) gives up after this long.</summary>
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>A claim is held this long; a replica that crashed mid-send loses it then and the sweeper hands the row out again.</summary>
    public TimeSpan Lease { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>The router reads unrouted transitions at least this often (it is woken on every commit too).</summary>
    public TimeSpan RouterPoll { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The sweeper looks for due retries and expired leases at least this often.</summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A transition older than this when it is routed (the fan-out was down, or routes were just configured) is not notified.</summary>
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Messages one coordinator delivers at once.</summary>
    public int ConcurrentDeliveries { get; set; } = 8;

    /// <summary>A new notification waits this long for others of its group (and receiver) to join it in one message. 0: send at once.</summary>
    public TimeSpan GroupWait { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The labels whose values make a group (default: <c>alertname</c>, one group per rule).</summary>
    public List<string>? GroupBy { get; set; }

    /// <summary>A still-firing, unacknowledged alert is notified again this often. 0: never.</summary>
    public TimeSpan RepeatInterval { get; set; } = TimeSpan.FromHours(4);

    /// <summary>
    /// Notification rows in a final state (sent, dead, silenced, inhibited) older than this are deleted, once their alert
    /// episode is over (see <see cref="NotificationRetention"/>). Default 30 days, the runbook's log retention.
    /// </summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(30);

    /// <summary>How often the notification retention runs.</summary>
    public TimeSpan RetentionInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Alerts of hosts inside an open maintenance window are silenced (planned restarts page nobody).</summary>
    public bool SilenceMaintenanceWindows { get; set; } = true;

    /// <summary>The built-in inhibition: a firing <c>agent-offline</c> alert suppresses the other alerts of its host.</summary>
    public bool InhibitHostOffline { get; set; } = true;

    /// <summary>More inhibitions: while an alert matching Source fires, alerts matching Target with equal Equal labels are not notified.</summary>
    public List<InhibitOptions> Inhibit { get; set; } = [];

    /// <summary>
    /// A link to a host in messages (Slack's host field, email's Host link): a URL with <c>{host}</c> and/or <c>{agent_id}</c>,
    /// e.g. <c>https://fleet.example.com/api/v1/agents/{agent_id}</c>. Empty: no link.
    /// </summary>
    public string? HostUrl { get; set; }

    /// <summary>The <see cref="HostUrl"/> of a host, or null.</summary>
    public string? HostLink(string host, string agentId) => string.IsNullOrEmpty(HostUrl) || (host.Length == 0 && agentId.Length == 0) ? null
        : HostUrl.Replace("{host}", Uri.EscapeDataString(host), StringComparison.Ordinal).Replace("{agent_id}", Uri.EscapeDataString(agentId), StringComparison.Ordinal);

    public IReadOnlyList<string> EffectiveGroupBy => GroupBy is { Count: > 0 } g ? g : ["alertname"];

    /// <summary>The inhibitions in force: the configured ones plus the built-in host-offline one.</summary>
    public IReadOnlyList<InhibitOptions> EffectiveInhibit => InhibitHostOffline
        ? [.. Inhibit, new InhibitOptions { Source = ["alertname=agent-offline"], Equal = ["host"] }]
        : Inhibit;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        foreach (var (name, r) in Receivers)
        {
            if (name.Length > 128)
                yield return new($"{Section}:Receivers: '{name[..40]}…' is longer than 128 characters.", [nameof(Receivers)]);
            foreach (var problem in r.Problems($"{Section}:Receivers:{name}"))
                yield return new(problem, [nameof(Receivers)]);
        }
        for (var i = 0; i < Routes.Count; i++)
        {
            var key = $"{Section}:Routes:{i}";
            var route = Routes[i];
            if (route.Receivers.Count == 0)
                yield return new($"{key}:Receivers: a route names at least one receiver.", [nameof(Routes)]);
            foreach (var receiver in route.Receivers.Where(r => !Receivers.ContainsKey(r)))
                yield return new($"{key}:Receivers: '{receiver}' is not a receiver (known: {string.Join(", ", Receivers.Keys)}).", [nameof(Routes)]);
            foreach (var matcher in route.Matchers)
            {
                string? problem = null;
                try { SilenceMatcher.Parse(matcher, $"{key}:Matchers"); }
                catch (ArgumentException ex) { problem = ex.Message; }
                if (problem is not null) yield return new(problem, [nameof(Routes)]);
            }
            foreach (var severity in route.Severities.Where(s => !Severities.All.Contains(s)))
                yield return new($"{key}:Severities: '{severity}' is not a severity ({string.Join(", ", Severities.All)}).", [nameof(Routes)]);
        }
        if (string.IsNullOrWhiteSpace(Queue) || Queue.Length > 200)
            yield return new($"{Section}:Queue: '{Queue}' must be a queue name of 1-200 characters.", [nameof(Queue)]);
        if (RetryBase <= TimeSpan.Zero || RetryMax < RetryBase)
            yield return new($"{Section}:RetryBase/RetryMax: '{RetryBase}'/'{RetryMax}': the base must be positive and not above the maximum.", [nameof(RetryBase)]);
        if (MaxAttempts is < 1 or > 100)
            yield return new($"{Section}:MaxAttempts: '{MaxAttempts}' must be between 1 and 100.", [nameof(MaxAttempts)]);
        if (SendTimeout <= TimeSpan.Zero || Lease < SendTimeout * 2)
            yield return new($"{Section}:Lease: '{Lease}' must be at least twice SendTimeout ('{SendTimeout}').", [nameof(Lease)]);
        if (RouterPoll <= TimeSpan.Zero || SweepInterval <= TimeSpan.Zero)
            yield return new($"{Section}:RouterPoll/SweepInterval must be positive.", [nameof(RouterPoll)]);
        if (MaxAge <= TimeSpan.Zero)
            yield return new($"{Section}:MaxAge: '{MaxAge}' must be positive.", [nameof(MaxAge)]);
        if (ConcurrentDeliveries is < 1 or > 256)
            yield return new($"{Section}:ConcurrentDeliveries: '{ConcurrentDeliveries}' must be between 1 and 256.", [nameof(ConcurrentDeliveries)]);
        if (!string.IsNullOrEmpty(HostUrl) && !(Uri.TryCreate(HostLink("h", "a"), UriKind.Absolute, out var hostUri) && hostUri.Scheme is "http" or "https"))
            yield return new($"{Section}:HostUrl: '{HostUrl}' is not an http(s) URL (placeholders {{host}} and {{agent_id}} allowed).", [nameof(HostUrl)]);
        if (GroupWait < TimeSpan.Zero || GroupWait > TimeSpan.FromMinutes(10))
            yield return new($"{Section}:GroupWait: '{GroupWait}' must be between 0 and 10 minutes.", [nameof(GroupWait)]);
        foreach (var label in GroupBy ?? [])
            if (!LabelName(label))
                yield return new($"{Section}:GroupBy: '{label}' is not a label name (letters, digits, '_').", [nameof(GroupBy)]);
        if (RepeatInterval < TimeSpan.Zero || (RepeatInterval > TimeSpan.Zero && RepeatInterval < TimeSpan.FromMinutes(1)))
            yield return new($"{Section}:RepeatInterval: '{RepeatInterval}' must be 0 (never) or at least 1 minute.", [nameof(RepeatInterval)]);
        if (Retention < TimeSpan.FromDays(1) || Retention > TimeSpan.FromDays(3650))
            yield return new($"{Section}:Retention: '{Retention}' must be between 1 day and 3650 days.", [nameof(Retention)]);
        if (RetentionInterval < TimeSpan.FromMinutes(1) || RetentionInterval > TimeSpan.FromDays(1))
            yield return new($"{Section}:RetentionInterval: '{RetentionInterval}' must be between 1 minute and 1 day.", [nameof(RetentionInterval)]);
        for (var i = 0; i < Inhibit.Count; i++)
        {
            var key = $"{Section}:Inhibit:{i}";
            if (Inhibit[i].Source.Count == 0)
                yield return new($"{key}:Source: an inhibition needs at least one matcher for the alert that inhibits.", [nameof(Inhibit)]);
            foreach (var (field, matchers) in new[] { ("Source", Inhibit[i].Source), ("Target", Inhibit[i].Target) })
                foreach (var matcher in matchers)
                {
                    string? problem = null;
                    try { SilenceMatcher.Parse(matcher, $"{key}:{field}"); }
                    catch (ArgumentException ex) { problem = ex.Message; }
                    if (problem is not null) yield return new(problem, [nameof(Inhibit)]);
                }
            foreach (var label in Inhibit[i].Equal.Where(l => !LabelName(l)))
                yield return new($"{key}:Equal: '{label}' is not a label name (letters, digits, '_').", [nameof(Inhibit)]);
        }
    }
}

/// <summary>Where notifications go: a Slack incoming webhook, an SMTP mailbox or a generic signed webhook.</summary>
public sealed class ReceiverOptions
{
    /// <summary>At most one message per this interval (default: 1 s for Slack, as Slack asks per webhook; none otherwise). Alerts due meanwhile wait and go out together.</summary>
    public TimeSpan? MinInterval { get; set; }

    /// <summary>At most this many alerts in one message (default 20 for Slack and email, 1 for webhooks: one JSON document per alert).</summary>
    public int? MaxBatch { get; set; }

    public TimeSpan EffectiveMinInterval => MinInterval ?? (Kind == ReceiverKinds.Slack ? TimeSpan.FromSeconds(1) : TimeSpan.Zero);

    public int EffectiveMaxBatch => MaxBatch ?? (Kind == ReceiverKinds.Webhook ? 1 : 20);

    /// <summary><see cref="ReceiverKinds"/>.</summary>
    public string Kind { get; set; } = "";

    /// <summary>Send a follow-up when the alert resolves.</summary>
    public bool SendResolved { get; set; } = true;

    /// <summary>slack, webhook: the URL to POST to.</summary>
    public string? Url { get; set; }

    /// <summary>slack: the channel name shown (the webhook decides where messages go).</summary>
    public string? Channel { get; set; }

    /// <summary>webhook: the HMAC-SHA256 key of the X-Fleet-Signature header.</summary>
    public string? Secret { get; set; }

    /// <summary>email: SMTP server.</summary>
    public string? Host { get; set; }

    public int Port { get; set; } = 587;

    /// <summary>email: none, starttls or ssl.</summary>
    public string Security { get; set; } = "starttls";

    public string? Username { get; set; }
    public string? Password { get; set; }
    public string? From { get; set; }
    public List<string> To { get; set; } = [];

    internal IEnumerable<string> Problems(string key)
    {
        if (MinInterval is { } interval && (interval < TimeSpan.Zero || interval > TimeSpan.FromMinutes(10)))
            yield return $"{key}:MinInterval: '{interval}' must be between 0 and 10 minutes.";
        if (MaxBatch is { } batch && batch is < 1 or > 100)
            yield return $"{key}:MaxBatch: '{batch}' must be between 1 and 100.";
        switch (Kind)
        {
            case ReceiverKinds.Slack or ReceiverKinds.Webhook:
                if (!Uri.TryCreate(Url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                    yield return $"{key}:Url: '{Url}' is not an http(s) URL.";
                if (Kind == ReceiverKinds.Webhook && string.IsNullOrEmpty(Secret))
                    yield return $"{key}:Secret: a webhook receiver needs the HMAC secret its requests are signed with.";
                break;
            case ReceiverKinds.Email:
                if (string.IsNullOrWhiteSpace(Host)) yield return $"{key}:Host: the SMTP server is missing.";
                if (Port is < 1 or > 65535) yield return $"{key}:Port: '{Port}' is not a TCP port.";
                if (EmailSender.SocketOptions(Security) is null) yield return $"{key}:Security: '{Security}' is not one of none, starttls, ssl.";
                if (!MimeKit.MailboxAddress.TryParse(From ?? "", out _)) yield return $"{key}:From: '{From}' is not a mail address.";
                if (To.Count == 0) yield return $"{key}:To: at least one recipient.";
                foreach (var to in To.Where(t => !MimeKit.MailboxAddress.TryParse(t, out _)))
                    yield return $"{key}:To: '{to}' is not a mail address.";
                break;
            default:
                yield return $"{key}:Kind: '{Kind}' is not one of slack, email, webhook.";
                break;
        }
    }
}

/// <summary>A route: transitions whose labels match every matcher (silence syntax) and whose severity is listed go to its receivers.</summary>
public sealed class RouteOptions
{
    /// <summary>"host=web-1", "alertname=~disk.*", "mount!=/boot"; the rule name is the label <c>alertname</c>. Empty: every alert.</summary>
    public List<string> Matchers { get; set; } = [];

    /// <summary>Empty: every severity.</summary>
    public List<string> Severities { get; set; } = [];

    public List<string> Receivers { get; set; } = [];
}

/// <summary>An inhibition: while an alert matching <see cref="Source"/> fires, alerts matching <see cref="Target"/> whose <see cref="Equal"/> labels have the same values are not notified.</summary>
public sealed class InhibitOptions
{
    public List<string> Source { get; set; } = [];

    /// <summary>Empty: every other alert.</summary>
    public List<string> Target { get; set; } = [];

    public List<string> Equal { get; set; } = [];
}

public static class ReceiverKinds
{
    public const string Slack = "slack", Email = "email", Webhook = "webhook";
}
