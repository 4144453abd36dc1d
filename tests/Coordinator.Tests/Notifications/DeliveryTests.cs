using System.Globalization;
using System.Text;
using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Notifications;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Coordinator.Tests.Notifications;

/// <summary>Embedded mode (SQLite, in-memory transport): retries, dead-lettering, silences and webhook signatures.</summary>
public sealed class DeliveryTests
{
    [Fact]
    public async Task Slack429WithRetryAfter_ThenSuccess_IsDeliveredOnce_NotBeforeRetryAfter()
    {
        using var slack = new StubReceiver { Answer = n => n == 1 ? (429, 1) : (200, null) };
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Slack("slack", slack.Url()).Route(0, "slack");
        _ = coordinator.Server;

        await coordinator.TransitionAsync("disk_full", AlertTransitionKinds.Firing, "web-1");
        var sent = await Eventually.UntilAsync(() => coordinator.NotificationsAsync(), n => n.Count == 1 && n[0].State == NotificationStates.Sent, "the notification sent");

        Assert.Equal(2, slack.Requests.Count);
        Assert.Equal([429, 200], slack.Requests.Select(r => r.AnsweredWith));
        Assert.Single(slack.Accepted);
        Assert.True(slack.Requests[1].At - slack.Requests[0].At >= TimeSpan.FromSeconds(1),
            $"the retry came {(slack.Requests[1].At - slack.Requests[0].At).TotalMilliseconds:0} ms after the 429 with Retry-After: 1");
        Assert.Equal(2, sent[0].Attempts);
        Assert.Null(sent[0].LeaseOwner);
    }

    [Fact]
    public async Task ARetryAfterOfYears_IsHonouredForAnHourAtMost_AndTheErrorIsStoredWithoutTheWebhooksSecretPath()
    {
        using var slack = new StubReceiver { Answer = _ => (429, 100_000_000) };
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Slack("slack", slack.Url("services/T000/SECRET-TOKEN")).Route(0, "slack");
        _ = coordinator.Server;

        var before = DateTime.UtcNow;
        await coordinator.TransitionAsync("disk_full", AlertTransitionKinds.Firing, "web-8");
        var row = (await Eventually.UntilAsync(() => coordinator.NotificationsAsync(), n => n.Count == 1 && n[0].Attempts == 1 && n[0].State == NotificationStates.Pending,
            "the first attempt refused"))[0];
        Assert.InRange(row.NextAttemptAt, before.AddMinutes(59), DateTime.UtcNow.AddHours(1).AddSeconds(1));
        Assert.StartsWith("HTTP 429", row.LastError);
        Assert.DoesNotContain("SECRET-TOKEN", row.LastError);
        await using var db = coordinator.Db();
        var gate = await db.Set<ReceiverGateRecord>().AsNoTracking().SingleAsync(g => g.Name == "slack");
        Assert.InRange(gate.NextSendAt, before.AddMinutes(59), DateTime.UtcNow.AddHours(1).AddSeconds(1));
    }

    [Fact]
    public async Task Webhook5xx_BeyondTheBudget_IsDeadAndAudited()
    {
        using var hook = new StubReceiver { Answer = _ => (503, null) };
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Webhook("pager", hook.Url(), "s3cret").Route(0, "pager");
        _ = coordinator.Server;

        await coordinator.TransitionAsync("disk_full", AlertTransitionKinds.Firing, "web-2");
        var dead = await Eventually.UntilAsync(() => coordinator.NotificationsAsync(), n => n.Count == 1 && n[0].State == NotificationStates.Dead, "the notification dead");

        Assert.Equal(3, hook.Requests.Count); // MaxAttempts
        Assert.Equal(3, dead[0].Attempts);
        Assert.StartsWith("HTTP 503", dead[0].LastError);
        await using var db = coordinator.Db();
        var audit = await db.Set<AuditRecord>().AsNoTracking().SingleAsync(a => a.Action == "notification.dead");
        Assert.Equal($"notification/{dead[0].Id}", audit.Target);
        Assert.Equal("web-2", audit.Host);
        Assert.Equal("system", audit.ActorKind);
        Assert.Contains("\"receiver\":\"pager\"", audit.ParametersJson);
        Assert.StartsWith("HTTP 503", audit.Outcome);
    }

    [Fact]
    public async Task DeadNotifications_RaiseTheNotificationDeadAlert_NamingTheReceiver_WhichGoesToAnotherReceiver()
    {
        using var hook = new StubReceiver { Answer = _ => (503, null) };
        using var slack = new StubReceiver();
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Webhook("pager", hook.Url(), "s3cret").Slack("slack", slack.Url())
            .With("Fleet:Notifications:Routes:0:Matchers:0", "alertname=disk_full").Route(0, "pager")
            .With("Fleet:Notifications:Routes:1:Matchers:0", "alertname=notification-dead").Route(1, "slack")
            .With("Fleet:Alerts:EvaluationInterval", "00:10:00");
        _ = coordinator.Server;
        await new Protocol.V1.Rules.RulesClient(coordinator.Channel("alice")).CreateRuleAsync(new Protocol.V1.CreateRuleRequest
        {
            Yaml = File.ReadAllText(Path.Combine(RepoPaths.Root, "deploy", "rules", "notification-dead.yaml")),
        });

        await coordinator.TransitionAsync("disk_full", AlertTransitionKinds.Firing, "web-7");
        await Eventually.UntilAsync(() => coordinator.NotificationsAsync(), n => n.Count == 1 && n[0].State == NotificationStates.Dead, "the notification dead");
        await coordinator.Services.GetRequiredService<AlertEngine>().TickAsync(default);

        await Eventually.UntilAsync(() => slack.Accepted.Count == 1, "the notification-dead alert on Slack");
        var message = slack.Accepted[0].Json;
        Assert.Equal("FIRING: notification-dead", message.GetProperty("text").GetString());
        Assert.StartsWith("Notifications to receiver pager are failing: 1 dead in 1h (last error: HTTP 503",
            message.GetProperty("blocks")[1].GetProperty("text").GetProperty("text").GetString());
        Assert.Equal(3, hook.Requests.Count); // the dead one's attempts; the alert about it never went to the broken receiver
    }

    [Fact]
    public async Task Webhook_IsSignedWithHmac_AndCarriesTheIdempotencyKey()
    {
        using var hook = new StubReceiver();
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Webhook("pager", hook.Url(), "s3cret").Route(0, "pager");
        _ = coordinator.Server;

        var transition = await coordinator.TransitionAsync("disk_full", AlertTransitionKinds.Firing, "web-3");
        await Eventually.UntilAsync(() => hook.Accepted.Count == 1, "the webhook call");
        var notification = (await coordinator.NotificationsAsync()).Single();

        var request = hook.Requests.Single();
        var expected = "sha256=" + Convert.ToHexStringLower(System.Security.Cryptography.HMACSHA256.HashData(
            Encoding.UTF8.GetBytes("s3cret"), Encoding.UTF8.GetBytes(request.Body)));
        Assert.Equal(expected, request.Headers["X-Fleet-Signature"]);
        Assert.NotEqual(WebhookSender.Signature("other", Encoding.UTF8.GetBytes(request.Body)), request.Headers["X-Fleet-Signature"]);
        Assert.Equal(notification.Id.ToString(CultureInfo.InvariantCulture), request.Headers["Idempotency-Key"]);
        Assert.Equal("disk_full", request.Json.GetProperty("alert").GetString());
        Assert.Equal("firing", request.Json.GetProperty("state").GetString());
        Assert.Equal("web-3", request.Json.GetProperty("labels").GetProperty("host").GetString());
        Assert.Equal(transition.Id, request.Json.GetProperty("transitionId").GetInt64());
    }

    [Fact]
    public async Task SilencedAlert_IsNotNotified_AndTheReasonIsRecorded_PendingIsNeverNotified()
    {
        using var slack = new StubReceiver();
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Slack("slack", slack.Url()).Route(0, "slack");
        _ = coordinator.Server;
        await using (var db = coordinator.Db())
        {
            db.Set<SilenceRecord>().Add(new SilenceRecord
            {
                Id = "sil-web-4", MatchersJson = "[\"host=web-4\"]", StartsAt = DateTime.UtcNow.AddMinutes(-1), EndsAt = DateTime.UtcNow.AddHours(1),
                Comment = "planned disk swap", CreatedBy = "alice", CreatedAt = DateTime.UtcNow,
            });
            await db.SaveChangesAsync();
        }

        var silenced = await coordinator.TransitionAsync("disk_full", AlertTransitionKinds.Firing, "web-4");
        var pending = await coordinator.TransitionAsync("disk_full", AlertTransitionKinds.Pending, "web-5");
        var loud = await coordinator.TransitionAsync("disk_full", AlertTransitionKinds.Firing, "web-5", ruleId: pending.RuleId);
        await Eventually.UntilAsync(() => slack.Accepted.Count == 1, "the unsilenced alert's message");
        await Eventually.UntilAsync(async () =>
        {
            await using var db = coordinator.Db();
            return await db.Set<AlertTransitionRecord>().CountAsync(t => t.RoutedAt == null) == 0;
        }, "every transition routed");

        Assert.Single(slack.Requests);
        Assert.Contains("web-5", slack.Requests[0].Body);
        var rows = await coordinator.NotificationsAsync();
        Assert.Equal(2, rows.Count); // none for the pending transition
        var quiet = rows.Single(n => n.TransitionId == silenced.Id);
        Assert.Equal(NotificationStates.Silenced, quiet.State);
        Assert.StartsWith("silenced by sil-web-4", quiet.LastError);
        Assert.Equal(NotificationStates.Sent, rows.Single(n => n.TransitionId == loud.Id).State);
    }

    [Fact]
    public async Task AfterACrash_TheSweeperSendsExpiredLeasesAndLostMessages_ButNeverWhatWasMarkedSent()
    {
        using var hook = new StubReceiver();
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Webhook("pager", hook.Url(), "s3cret").Route(0, "pager");
        _ = coordinator.Server;
        var now = DateTime.UtcNow;
        NotificationRecord Row(long transition, string state, string? owner = null, DateTime? leaseUntil = null) => new()
        {
            TransitionId = transition, Receiver = "pager", State = state, LeaseOwner = owner, LeaseUntil = leaseUntil, NextAttemptAt = now.AddSeconds(-5),
            Attempts = state == NotificationStates.Pending ? 0 : 1, CreatedAt = now.AddSeconds(-5), SentAt = state == NotificationStates.Sent ? now : null,
            PayloadJson = System.Text.Json.JsonSerializer.Serialize(new NotificationPayload(transition, "disk_full", "firing", "critical",
                new Dictionary<string, string> { ["host"] = $"web-{transition}" }, new Dictionary<string, string>(), 0.9, now, "fp", 1), NotificationPayload.Json),
        };
        // As a crashed replica left them: claimed mid-send (lease expired), written but its message lost, already sent.
        var rows = new[]
        {
            Row(101, NotificationStates.Sending, "crashed-replica", now.AddSeconds(-1)),
            Row(102, NotificationStates.Pending),
            Row(103, NotificationStates.Sent),
            Row(104, NotificationStates.Sending, "live-replica", now.AddMinutes(5)),
        };
        await using (var db = coordinator.Db())
        {
            db.Set<NotificationRecord>().AddRange(rows);
            await db.SaveChangesAsync();
        }

        var done = await Eventually.UntilAsync(() => coordinator.NotificationsAsync(),
            n => n.Count(x => x.State == NotificationStates.Sent) == 3, "the expired lease and the lost message sent");

        var transitionOf = done.ToDictionary(n => n.Id.ToString(CultureInfo.InvariantCulture), n => n.TransitionId);
        Assert.Equal([101L, 102L], hook.Requests.Select(r => transitionOf[r.Headers["Idempotency-Key"]]).Order());
        Assert.Equal(2, done.Single(n => n.TransitionId == 101).Attempts);
        Assert.Equal(NotificationStates.Sending, done.Single(n => n.TransitionId == 104).State); // a live lease is left alone
        // Handing the sent and the leased rows out again changes nothing.
        var delivery = coordinator.Services.GetRequiredService<NotificationDelivery>();
        foreach (var row in done) await delivery.DeliverAsync(row.Id, default);
        Assert.Equal(2, hook.Requests.Count);
    }
}
