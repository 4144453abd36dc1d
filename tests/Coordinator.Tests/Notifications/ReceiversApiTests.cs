using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Notifications;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Tests.Notifications;

/// <summary>The Receivers API: redacted listing with routes and delivery stats, the audited test-send, NotFound naming the receiver.</summary>
public sealed class ReceiversApiTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    const string SlackToken = "T0FLEET/B0FLEET/sl4ckT0kenDoNotLeak";
    const string WebhookPath = "hooks/wh-path-token-do-not-leak";
    const string HmacSecret = "hmac-secret-do-not-leak";
    const string SmtpPassword = "smtp-password-do-not-leak";

    CoordinatorFactory Coordinator(Store store) =>
        NotificationsKit.Coordinator(store, store == Store.Postgres ? postgres.ConnectionString : null);

    [Theory]
    [InlineData(Store.Postgres)]
    [InlineData(Store.Sqlite)]
    public async Task List_ShowsRedactedTargets_RoutesAndDeliveryStats_AndNeverASecret(Store store)
    {
        var (slack, hook, mail) = (TestServices.UniqueName("slack"), TestServices.UniqueName("hook"), TestServices.UniqueName("mail"));
        await using var coordinator = Coordinator(store)
            .Slack(slack, $"https://hooks.slack.example/services/{SlackToken}?token={SlackToken}", "#ops")
            .Webhook(hook, $"http://user:{HmacSecret}@127.0.0.1:8443/{WebhookPath}", HmacSecret)
            .Email(mail, "oncall@example.test").WithSmtpLogin(mail, "fleet", SmtpPassword)
            .Route(0, slack, mail)
            .With("Fleet:Notifications:Routes:1:Matchers:0", "host=~db-.*").With("Fleet:Notifications:Routes:1:Severities:0", "critical")
            .Route(1, slack);
        var sentAt = new DateTime(2026, 11, 28, 10, 15, 0, DateTimeKind.Utc);
        await coordinator.NotificationRowsAsync(
            Row(slack, NotificationStates.Sent, sentAt: sentAt.AddMinutes(-5)),
            Row(slack, NotificationStates.Sent, sentAt: sentAt),
            Row(slack, NotificationStates.Dead, error: $"HTTP 404 Not Found: no_service (https://hooks.slack.example/services/{SlackToken})"),
            Row(slack, NotificationStates.Pending, error: "HTTP 500 Internal Server Error: try later"),
            Row(slack, NotificationStates.Silenced, error: "silenced by s-1"),
            Row(mail, NotificationStates.Dead, error: $"535 authentication failed for password={SmtpPassword}"));

        var listed = await new Receivers.ReceiversClient(coordinator.Channel()).ListReceiversAsync(new ListReceiversRequest());
        var byName = listed.Receivers.Where(r => r.Name == slack || r.Name == hook || r.Name == mail).ToDictionary(r => r.Name);
        Assert.Equal(3, byName.Count);

        var s = byName[slack];
        Assert.Equal(("slack", "https://hooks.slack.example", "#ops", true), (s.Kind, s.Target, s.Channel, s.SendResolved));
        Assert.Equal([0, 1], s.Routes.Select(r => r.Index));
        Assert.Empty(s.Routes[0].Matchers);
        Assert.Equal(["host=~db-.*"], s.Routes[1].Matchers);
        Assert.Equal(["critical"], s.Routes[1].Severities);
        Assert.Equal((2L, 1L, 1L, 1L, 0L), (s.Stats.Sent, s.Stats.Dead, s.Stats.Pending, s.Stats.Silenced, s.Stats.Sending));
        Assert.Equal(sentAt, s.Stats.LastSentAt.ToDateTime());
        Assert.Equal("HTTP 500 Internal Server Error: try later", s.Stats.LastError); // the newest failure, not the silence

        var h = byName[hook];
        Assert.Equal(("webhook", "http://127.0.0.1:8443"), (h.Kind, h.Target));
        Assert.Empty(h.Routes);
        Assert.Equal(0, h.Stats.Sent + h.Stats.Dead + h.Stats.Pending);
        Assert.Null(h.Stats.LastSentAt);

        var m = byName[mail];
        Assert.Equal(("email", TestServices.Smtp, "fleet@example.test", "none"), (m.Kind, m.Target, m.From, m.Security));
        Assert.Equal(["oncall@example.test"], m.To);
        Assert.Equal([0], m.Routes.Select(r => r.Index));
        Assert.Equal(1, m.Stats.Dead);
        Assert.StartsWith("535 authentication failed", m.Stats.LastError);

        // The REST answer, byte for byte, and GetReceiver carry no secret either.
        using var http = coordinator.CreateClient();
        var rest = await http.GetStringAsync("/api/v1/receivers");
        var one = (await new Receivers.ReceiversClient(coordinator.Channel()).GetReceiverAsync(new GetReceiverRequest { Name = slack })).ToString();
        foreach (var text in new[] { rest, listed.ToString(), one })
            foreach (var secret in new[] { SlackToken, "services/", WebhookPath, HmacSecret, SmtpPassword })
                Assert.DoesNotContain(secret, text, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("\"target\":\"https://hooks.slack.example\"", rest.Replace(" ", ""));
    }

    [Fact]
    public async Task TestSend_ReachesTheSlackStandIn_WithTheTestMessage_AndIsAudited()
    {
        using var stub = new StubReceiver();
        var name = TestServices.UniqueName("ops-slack");
        await using var coordinator = Coordinator(Store.Postgres).Slack(name, stub.Url("services/" + SlackToken), "#fleet-test");

        var answer = await new Receivers.ReceiversClient(coordinator.Channel("erin")).TestReceiverAsync(new TestReceiverRequest { Name = name });

        Assert.True(answer.Delivered, answer.Error);
        Assert.Equal((name, "slack", $"http://127.0.0.1:{stub.Port}", ""), (answer.Name, answer.Kind, answer.Target, answer.Error));
        Assert.InRange(answer.ElapsedMs, 0, 15_000);
        Assert.Null(answer.RetryAfter);
        var request = Assert.Single(stub.Requests);
        Assert.Equal("/services/" + SlackToken, request.Path);
        Assert.Equal("#fleet-test", request.Json.GetProperty("channel").GetString());
        Assert.Equal("FIRING: fleet-test on fleet-test", request.Json.GetProperty("blocks")[0].GetProperty("text").GetProperty("text").GetString());
        Assert.Contains(ReceiversKit.Strings(request.Json), t => t.Contains($"Test message from Fleet to receiver '{name}', requested by erin", StringComparison.Ordinal));

        await using var db = coordinator.Db();
        var audit = await db.Set<AuditRecord>().AsNoTracking().SingleAsync(r => r.Target == "receiver:" + name);
        Assert.Equal(("receiver.tested", "erin", "user", "ok"), (audit.Action, audit.Actor, audit.ActorKind, audit.Outcome));
        using var parameters = JsonDocument.Parse(audit.ParametersJson);
        Assert.Equal("true", parameters.RootElement.GetProperty("delivered").GetString());
        Assert.Equal($"http://127.0.0.1:{stub.Port}", parameters.RootElement.GetProperty("target").GetString());
        Assert.DoesNotContain(SlackToken, audit.ParametersJson);
        // A test-send goes around the outbox: no notification row.
        Assert.Empty(await db.Set<NotificationRecord>().AsNoTracking().Where(n => n.Receiver == name).ToListAsync());
    }

    [Fact]
    public async Task TestSend_ToAReceiverAnswering500_ReportsNotDelivered_WithTheHttpError_AndAudits()
    {
        using var stub = new StubReceiver { Answer = n => n == 1 ? (429, 7) : (500, null) };
        var name = TestServices.UniqueName("broken-hook");
        await using var coordinator = Coordinator(Store.Postgres).Webhook(name, stub.Url(WebhookPath), HmacSecret);
        var client = new Receivers.ReceiversClient(coordinator.Channel("frank"));

        var limited = await client.TestReceiverAsync(new TestReceiverRequest { Name = name });
        Assert.False(limited.Delivered);
        Assert.StartsWith("HTTP 429", limited.Error);
        Assert.Equal(TimeSpan.FromSeconds(7), limited.RetryAfter.ToTimeSpan());

        // Over REST: 200 with delivered false (the receiver refused; the API call itself worked).
        using var http = coordinator.CreateClient();
        using var response = await http.PostAsJsonAsync($"/api/v1/receivers/{name}:test", new { });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadAsStringAsync();
        var json = JsonDocument.Parse(body).RootElement;
        Assert.False(json.TryGetProperty("delivered", out var delivered) && delivered.GetBoolean());
        Assert.StartsWith("HTTP 500 Internal Server Error", json.GetProperty("error").GetString());
        Assert.DoesNotContain(HmacSecret, body);
        Assert.DoesNotContain(WebhookPath, body);

        Assert.Equal(2, stub.Requests.Count);
        Assert.All(stub.Requests, r => Assert.StartsWith("sha256=", r.Headers["X-Fleet-Signature"]));
        await using var db = coordinator.Db();
        var audits = await db.Set<AuditRecord>().AsNoTracking().Where(r => r.Target == "receiver:" + name).OrderBy(r => r.Id).ToListAsync();
        Assert.Equal(2, audits.Count);
        Assert.All(audits, a => Assert.Equal("receiver.tested", a.Action));
        Assert.StartsWith("HTTP 429", audits[0].Outcome);
        Assert.StartsWith("HTTP 500 Internal Server Error", audits[1].Outcome);
        Assert.Contains("\"delivered\":\"false\"", audits[1].ParametersJson);
    }

    [Fact]
    public async Task TestSend_ToAnEmailReceiver_ArrivesInMailDev()
    {
        var name = TestServices.UniqueName("ops-mail");
        var to = $"{name}@example.test";
        await using var coordinator = Coordinator(Store.Postgres).Email(name, to);

        var answer = await new Receivers.ReceiversClient(coordinator.Channel("grace")).TestReceiverAsync(new TestReceiverRequest { Name = name });

        Assert.True(answer.Delivered, answer.Error);
        Assert.Equal(TestServices.Smtp, answer.Target);
        var email = Assert.Single(await Eventually.UntilAsync(() => ReceiversKit.EmailsToAsync(to), e => e.Count >= 1, $"the test email to {to} at maildev"));
        Assert.Equal("[FIRING] fleet-test on fleet-test (info)", email.GetProperty("subject").GetString());
        Assert.Contains($"Test message from Fleet to receiver '{name}', requested by grace", email.GetProperty("text").GetString());
        Assert.Equal("fleet@example.test", email.GetProperty("from")[0].GetProperty("address").GetString());
    }

    [Fact]
    public async Task UnknownReceiver_IsNotFound_NamingIt_AndNothingIsSentOrAudited()
    {
        using var stub = new StubReceiver();
        var known = TestServices.UniqueName("ops-slack");
        await using var coordinator = Coordinator(Store.Postgres).Slack(known, stub.Url());
        var client = new Receivers.ReceiversClient(coordinator.Channel());

        var get = await Assert.ThrowsAsync<RpcException>(() => client.GetReceiverAsync(new GetReceiverRequest { Name = "pager-duty" }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, get.StatusCode);
        Assert.Equal($"name: receiver 'pager-duty' is not configured (known: {known})", get.Status.Detail);
        var test = await Assert.ThrowsAsync<RpcException>(() => client.TestReceiverAsync(new TestReceiverRequest { Name = "pager-duty" }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, test.StatusCode);
        Assert.Contains("'pager-duty'", test.Status.Detail);
        var empty = await Assert.ThrowsAsync<RpcException>(() => client.TestReceiverAsync(new TestReceiverRequest { Name = " " }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, empty.StatusCode);
        Assert.StartsWith("name: is required", empty.Status.Detail);

        using var http = coordinator.CreateClient();
        using var rest = await http.PostAsJsonAsync("/api/v1/receivers/pager-duty:test", new { });
        Assert.Equal(HttpStatusCode.NotFound, rest.StatusCode);
        Assert.Contains("pager-duty", await rest.Content.ReadAsStringAsync());

        Assert.Empty(stub.Requests);
        await using var db = coordinator.Db();
        Assert.False(await db.Set<AuditRecord>().AnyAsync(r => r.Action == "receiver.tested"));
    }

    static long transitionIds = 5_000_000 + Random.Shared.Next(0, 1_000_000) * 10L;

    static NotificationRecord Row(string receiver, string state, DateTime? sentAt = null, string? error = null) => new()
    {
        TransitionId = Interlocked.Increment(ref transitionIds), Receiver = receiver, State = state, Attempts = state == NotificationStates.Sent ? 1 : 0,
        NextAttemptAt = DateTime.UtcNow.AddHours(1), CreatedAt = DateTime.UtcNow, SentAt = sentAt, LastError = error,
    };
}

/// <summary>Helpers of the receivers tests, next to <see cref="NotificationsKit"/>.</summary>
static class ReceiversKit
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>The emails maildev received for <paramref name="address"/> (unique per test, unlike the test message's subject).</summary>
    public static async Task<List<JsonElement>> EmailsToAsync(string address)
    {
        var json = await Http.GetStringAsync(TestServices.MailDevApi.TrimEnd('/') + "/api/email");
        return JsonDocument.Parse(json).RootElement.EnumerateArray()
            .Where(e => e.GetProperty("to").EnumerateArray().Any(t => t.GetProperty("address").GetString() == address)).ToList();
    }

    /// <summary>Every string value in a JSON document (the text of a Slack message, whatever its blocks).</summary>
    public static IEnumerable<string> Strings(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => [e.GetString()!],
        JsonValueKind.Object => e.EnumerateObject().SelectMany(p => Strings(p.Value)),
        JsonValueKind.Array => e.EnumerateArray().SelectMany(Strings),
        _ => [],
    };

    public static CoordinatorFactory WithSmtpLogin(this CoordinatorFactory f, string receiver, string user, string password) =>
        f.With($"Fleet:Notifications:Receivers:{receiver}:Username", user).With($"Fleet:Notifications:Receivers:{receiver}:Password", password);

    /// <summary>Notification rows as the router and the delivery leave them (past deliveries, for the stats).</summary>
    public static async Task NotificationRowsAsync(this CoordinatorFactory f, params NotificationRecord[] rows)
    {
        await using var db = f.Db();
        db.Set<NotificationRecord>().AddRange(rows);
        await db.SaveChangesAsync();
    }
}
