using System.Text.Json;
using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Notifications;
using Fleet.Coordinator.Schedules;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Coordinator.Tests.Notifications;

/// <summary>Embedded mode (SQLite, in-memory transport): grouping and the Slack rate limit, inhibition, maintenance windows, repeats.</summary>
public sealed class GroupingTests
{
    static long ruleIds = 7_000_000 + Random.Shared.Next(0, 1_000_000) * 10L;

    /// <summary>Writes a firing alert as the engine does: its state row and its firing transition (not yet routed).</summary>
    static async Task<AlertTransitionRecord> FiringAsync(CoordinatorFactory f, string rule, Dictionary<string, string> labels, long? ruleId = null,
        DateTime? at = null, bool wake = true)
    {
        var time = at ?? DateTime.UtcNow;
        labels.TryAdd("alertname", rule);
        var id = ruleId ?? Interlocked.Increment(ref ruleIds);
        var fingerprint = AlertLabels.Fingerprint(labels);
        var transition = new AlertTransitionRecord
        {
            RuleId = id, RuleName = rule, Fingerprint = fingerprint, Episode = 1, Kind = AlertTransitionKinds.Firing, Severity = "warning",
            Value = 0.9, Time = time, LabelsJson = AlertLabels.Json(labels),
            AnnotationsJson = AlertLabels.Json(new Dictionary<string, string> { ["summary"] = $"{rule} on {labels.GetValueOrDefault("host")}", ["value"] = "0.9" }),
        };
        await using (var db = f.Db())
        {
            db.Set<AlertRecord>().Add(new AlertRecord
            {
                RuleId = id, RuleName = rule, Fingerprint = fingerprint, State = AlertStates.Firing, Episode = 1, Severity = "warning",
                LabelsJson = transition.LabelsJson, AnnotationsJson = transition.AnnotationsJson, Value = 0.9, ActiveSince = time, FiringSince = time, UpdatedAt = time,
            });
            db.Set<AlertTransitionRecord>().Add(transition);
            await db.SaveChangesAsync();
        }
        if (wake) f.Services.GetRequiredService<AlertTransitions>().Wake();
        return transition;
    }

    static async Task ResolveAsync(CoordinatorFactory f, AlertTransitionRecord firing, bool transition)
    {
        await using var db = f.Db();
        await db.Set<AlertRecord>().Where(a => a.RuleId == firing.RuleId && a.Fingerprint == firing.Fingerprint)
            .ExecuteUpdateAsync(s => s.SetProperty(a => a.State, AlertStates.Resolved));
        if (!transition) return;
        db.Set<AlertTransitionRecord>().Add(new AlertTransitionRecord
        {
            RuleId = firing.RuleId, RuleName = firing.RuleName, Fingerprint = firing.Fingerprint, Episode = 1, Kind = AlertTransitionKinds.Resolved,
            Severity = firing.Severity, Value = 0.5, Time = DateTime.UtcNow, LabelsJson = firing.LabelsJson, AnnotationsJson = firing.AnnotationsJson,
        });
        await db.SaveChangesAsync();
        f.Services.GetRequiredService<AlertTransitions>().Wake();
    }

    static Dictionary<string, string> Host(string host) => new() { ["host"] = host, ["agent_id"] = "agent-" + host };

    [Fact]
    public async Task FiftySimultaneousAlerts_GoOutGrouped_WithinSlacksRateLimit_EachExactlyOnce()
    {
        using var slack = new StubReceiver();
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Slack("slack", slack.Url()).Route(0, "slack")
            .With("Fleet:Notifications:GroupWait", "00:00:01");
        _ = coordinator.Server;

        var rules = Enumerable.Range(1, 5).Select(i => $"rule-{i}").ToList();
        foreach (var rule in rules)
            for (var h = 0; h < 10; h++)
                await FiringAsync(coordinator, rule, Host($"web-{h}"), wake: false);
        coordinator.Services.GetRequiredService<AlertTransitions>().Wake();
        await Eventually.UntilAsync(async () => (await coordinator.NotificationsAsync()) is { Count: 50 } n && n.All(x => x.State == NotificationStates.Sent),
            "fifty notifications sent", TimeSpan.FromSeconds(60));

        var messages = slack.Requests;
        Assert.All(messages, m => Assert.Equal(200, m.AnsweredWith));
        Assert.Equal(3, messages.Count); // at most 20 alerts a message (MaxBatch), one message a second
        for (var i = 1; i < messages.Count; i++)
            Assert.True(messages[i].At - messages[i - 1].At >= TimeSpan.FromMilliseconds(950),
                $"message {i + 1} came {(messages[i].At - messages[i - 1].At).TotalMilliseconds:0} ms after the one before (Slack allows about one a second)");
        var alerts = new List<(string Rule, string Host)>();
        foreach (var m in messages)
        {
            var blocks = m.Json.GetProperty("blocks").EnumerateArray().ToList();
            Assert.StartsWith("FIRING: ", blocks[0].GetProperty("text").GetProperty("text").GetString());
            foreach (var section in blocks.Skip(1).Where(b => b.GetProperty("type").GetString() == "section"))
            {
                var lines = section.GetProperty("text").GetProperty("text").GetString()!.Split('\n');
                var rule = lines[0].Split('*')[1];
                alerts.AddRange(lines.Where(l => l.StartsWith("• FIRING ", StringComparison.Ordinal)).Select(l => (rule, l["• FIRING ".Length..].Split(':')[0])));
            }
        }
        Assert.Equal(50, alerts.Count);
        Assert.Equal(50, alerts.Distinct().Count());
        Assert.Equal(rules.SelectMany(r => Enumerable.Range(0, 10).Select(h => (r, $"web-{h}"))).Order(), alerts.Order());
        Assert.All(await coordinator.NotificationsAsync(), n => Assert.Equal(1, n.Attempts));
    }

    [Fact]
    public async Task OneGroupWithinTheGroupWait_IsOneEmail_AndOneSignedWebhookDocumentWhenTheWebhookBatches()
    {
        using var hook = new StubReceiver();
        var rule = TestServices.UniqueName("cert-expiring").Replace('_', '-');
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Email("mail", "oncall@example.test")
            .Webhook("hook", hook.Url(), "s3cret").With("Fleet:Notifications:Receivers:hook:MaxBatch", "10").Route(0, "mail", "hook")
            .With("Fleet:Notifications:GroupWait", "00:00:01");
        _ = coordinator.Server;

        foreach (var host in new[] { "lb-1", "lb-2", "lb-3" }) await FiringAsync(coordinator, rule, Host(host), wake: false);
        coordinator.Services.GetRequiredService<AlertTransitions>().Wake();
        var emails = await Eventually.UntilAsync(() => MailDev.EmailsAsync(rule), e => e.Count >= 1, "the grouped email");
        await Eventually.UntilAsync(async () => (await coordinator.NotificationsAsync()) is { Count: 6 } n && n.All(x => x.State == NotificationStates.Sent), "six sent");

        var email = Assert.Single(emails);
        Assert.Equal($"[FIRING:3] {rule}", email.GetProperty("subject").GetString());
        foreach (var host in new[] { "lb-1", "lb-2", "lb-3" }) Assert.Contains($"FIRING {rule} on {host} (warning)", email.GetProperty("text").GetString());
        var request = Assert.Single(hook.Requests);
        var items = request.Json.GetProperty("notifications").EnumerateArray().ToList();
        Assert.Equal(3, items.Count);
        Assert.Equal(["lb-1", "lb-2", "lb-3"], items.Select(i => i.GetProperty("labels").GetProperty("host").GetString()).Order());
        var ids = (await coordinator.NotificationsAsync()).Where(n => n.Receiver == "hook").Select(n => n.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(string.Join(",", ids), request.Headers["Idempotency-Key"]);
        Assert.Equal(WebhookSender.Signature("s3cret", System.Text.Encoding.UTF8.GetBytes(request.Body)), request.Headers["X-Fleet-Signature"]);
    }

    [Fact]
    public async Task HostOffline_InhibitsItsOtherAlerts_UntilItIsBack_AndTheResolvedGoesOnlyToWhoHeardItFire()
    {
        using var slack = new StubReceiver();
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Slack("slack", slack.Url()).Route(0, "slack")
            .With("Fleet:Notifications:Receivers:slack:MinInterval", "00:00:00");
        _ = coordinator.Server;

        var offline9 = await FiringAsync(coordinator, "agent-offline", Host("web-9"));
        await FiringAsync(coordinator, "agent-offline", Host("web-11"));
        await Eventually.UntilAsync(async () => (await coordinator.NotificationsAsync()) is { Count: 2 } n && n.All(x => x.State == NotificationStates.Sent),
            "the two offline alerts sent (an alert never inhibits itself)");
        var before = slack.Accepted.Count; // one message or two, as they were grouped
        var disk9 = await FiringAsync(coordinator, "disk-usage", Host("web-9"));
        var disk10 = await FiringAsync(coordinator, "disk-usage", Host("web-10"));
        var disk11 = await FiringAsync(coordinator, "disk-usage", Host("web-11"));
        await Eventually.UntilAsync(() => slack.Accepted.Count == before + 1, "the alert of the host that is online");
        await Eventually.UntilAsync(async () => (await coordinator.NotificationsAsync()).Count(n => n.State == NotificationStates.Inhibited) == 2, "two inhibited");

        var rows = await coordinator.NotificationsAsync();
        Assert.Equal("FIRING: disk-usage on web-10", slack.Accepted[before].Json.GetProperty("text").GetString());
        Assert.Equal("inhibited by agent-offline host=web-9", rows.Single(n => n.TransitionId == disk9.Id).LastError);
        Assert.Equal(NotificationStates.Inhibited, rows.Single(n => n.TransitionId == disk11.Id).State);

        // web-11's disk alert resolves while inhibited: nobody heard it fire, so nobody hears it resolve.
        await ResolveAsync(coordinator, disk11, transition: true);
        await ResolveAsync(coordinator, disk10, transition: true);
        await Eventually.UntilAsync(() => slack.Accepted.Count == before + 2, "web-10's resolved message");
        Assert.Equal("RESOLVED: disk-usage on web-10", slack.Accepted[before + 1].Json.GetProperty("text").GetString());
        await Eventually.UntilAsync(async () => (await coordinator.NotificationsAsync()).Count == 6, "the resolved transitions routed");
        Assert.DoesNotContain(await coordinator.NotificationsAsync(), n => n.Receiver == "slack" && n.TransitionId > disk11.Id && n.PayloadJson.Contains("web-11", StringComparison.Ordinal));

        // web-9 comes back while its disk alert still fires: now it is notified, as a late firing.
        await ResolveAsync(coordinator, offline9, transition: false);
        await coordinator.Services.GetRequiredService<NotificationRouter>().RenotifyAsync(default);
        await Eventually.UntilAsync(() => slack.Accepted.Count == before + 3, "web-9's late firing");
        var late = slack.Accepted[before + 2];
        Assert.Equal("FIRING: disk-usage on web-9", late.Json.GetProperty("text").GetString());
        Assert.Contains("Still firing since", late.Body);
        await Eventually.UntilAsync(async () => (await coordinator.NotificationsAsync()).Single(n => n.TransitionId == disk9.Id && n.Sequence == 1).State == NotificationStates.Sent,
            "the late firing marked sent");
        Assert.Equal(0, (await coordinator.NotificationsAsync()).Count(n => n.TransitionId != disk9.Id && n.Sequence > 0));
    }

    [Fact]
    public async Task OpenMaintenanceWindow_SilencesItsHosts_AndAStillFiringAlertIsNotifiedAfterTheWindow()
    {
        using var slack = new StubReceiver();
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Slack("slack", slack.Url()).Route(0, "slack")
            .With("Fleet:Notifications:Receivers:slack:MinInterval", "00:00:00")
            .With("Fleet:Schedules:RunScheduler", "false");
        _ = coordinator.Server;
        var now = DateTime.UtcNow;
        await using (var db = coordinator.Db())
        {
            db.Set<OccurrenceRecord>().Add(new OccurrenceRecord
            {
                Id = "weekly-restart@test", ScheduleId = "weekly-restart", ScheduledUtc = now.AddMinutes(-5), EndsUtc = now.AddHours(1),
                State = OccurrenceState.Open, SpecJson = "{}", HostsJson = "[\"agent-app-1\"]", ClaimedAt = now, OpenedAt = now, CreatedBy = "test",
            });
            await db.SaveChangesAsync();
        }

        var planned = await FiringAsync(coordinator, "service-down", Host("app-1"));
        var other = await FiringAsync(coordinator, "service-down", Host("app-2"));
        await Eventually.UntilAsync(() => slack.Accepted.Count == 1, "the alert of the host outside the window");
        var rows = await Eventually.UntilAsync(() => coordinator.NotificationsAsync(), n => n.Count == 2, "both routed");
        Assert.Contains("app-2", slack.Accepted[0].Body);
        var silenced = rows.Single(n => n.TransitionId == planned.Id);
        Assert.Equal(NotificationStates.Silenced, silenced.State);
        Assert.StartsWith("maintenance window weekly-restart", silenced.LastError);

        // The window closes and the service is still down: now it pages.
        await using (var db = coordinator.Db())
            await db.Set<OccurrenceRecord>().Where(o => o.Id == "weekly-restart@test")
                .ExecuteUpdateAsync(s => s.SetProperty(o => o.State, OccurrenceState.Succeeded).SetProperty(o => o.EndsUtc, DateTime.UtcNow));
        await coordinator.Services.GetRequiredService<NotificationRouter>().RenotifyAsync(default);
        await Eventually.UntilAsync(() => slack.Accepted.Count == 2, "the late firing after the window");
        Assert.Contains("app-1", slack.Accepted[1].Body);
        Assert.Single(slack.Accepted, r => r.Body.Contains("app-2", StringComparison.Ordinal)); // not repeated
        Assert.Equal(other.Id, (await coordinator.NotificationsAsync()).Single(n => n.State == NotificationStates.Sent && n.Sequence == 0).TransitionId);
    }

    [Fact]
    public async Task Silence_SuppressesThenExpires_AndWhatStillFiresIsNotifiedThen_ButWhatResolvedMeanwhileIsNot()
    {
        using var slack = new StubReceiver();
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Slack("slack", slack.Url()).Route(0, "slack")
            .With("Fleet:Notifications:Receivers:slack:MinInterval", "00:00:00");
        _ = coordinator.Server;
        var silences = new Protocol.V1.Silences.SilencesClient(coordinator.Channel("alice"));
        var silence = await silences.CreateSilenceAsync(new Protocol.V1.CreateSilenceRequest
        {
            Matchers = { "host=~db-.*" }, Duration = "1h", Comment = "storage migration",
        });

        var still = await FiringAsync(coordinator, "disk-usage", Host("db-1"));
        var gone = await FiringAsync(coordinator, "disk-usage", Host("db-2"));
        var rows = await Eventually.UntilAsync(() => coordinator.NotificationsAsync(), n => n.Count == 2, "both routed");
        Assert.All(rows, n => Assert.Equal(NotificationStates.Silenced, n.State));
        Assert.All(rows, n => Assert.StartsWith($"silenced by {silence.Id}", n.LastError));
        await ResolveAsync(coordinator, gone, transition: true); // resolves while silenced: nobody heard it fire

        await silences.ExpireSilenceAsync(new Protocol.V1.ExpireSilenceRequest { Id = silence.Id });
        await coordinator.Services.GetRequiredService<NotificationRouter>().RenotifyAsync(default);
        await Eventually.UntilAsync(() => slack.Accepted.Count == 1, "db-1's firing after the silence");
        Assert.Equal("FIRING: disk-usage on db-1", slack.Accepted[0].Json.GetProperty("text").GetString());
        var after = await Eventually.UntilAsync(() => coordinator.NotificationsAsync(), n => n.Any(x => x.State == NotificationStates.Sent), "the late firing marked sent");
        Assert.Equal(3, after.Count); // two silenced, db-1's late firing; nothing for db-2's resolution
        Assert.Equal(NotificationStates.Sent, after.Single(n => n.TransitionId == still.Id && n.Sequence == 1).State);
        Assert.Single(slack.Requests);
    }

    [Fact]
    public async Task StillFiring_IsRepeatedAfterTheRepeatInterval_UntilAcknowledged()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var slack = new StubReceiver();
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite).Slack("slack", slack.Url()).Route(0, "slack")
            .With("Fleet:Notifications:Receivers:slack:MinInterval", "00:00:00")
            .With("Fleet:Notifications:RepeatInterval", "00:30:00")
            .WithTime(time);
        _ = coordinator.Server;
        var router = coordinator.Services.GetRequiredService<NotificationRouter>();

        var firing = await FiringAsync(coordinator, "disk-usage", Host("db-1"), at: time.GetUtcNow().UtcDateTime);
        await Eventually.UntilAsync(async () => (await coordinator.NotificationsAsync()) is [{ State: NotificationStates.Sent }], "the first message sent");
        time.Advance(TimeSpan.FromMinutes(20));
        await router.RenotifyAsync(default);
        Assert.Single(await coordinator.NotificationsAsync()); // not yet

        time.Advance(TimeSpan.FromMinutes(11));
        await router.RenotifyAsync(default);
        await Eventually.UntilAsync(() => slack.Accepted.Count == 2, "the repeat");
        Assert.Contains("Still firing since", slack.Accepted[1].Body);
        Assert.Equal([0, 1], (await coordinator.NotificationsAsync()).Select(n => n.Sequence));

        await using (var db = coordinator.Db())
            await db.Set<AlertRecord>().Where(a => a.RuleId == firing.RuleId)
                .ExecuteUpdateAsync(s => s.SetProperty(a => a.AcknowledgedAt, time.GetUtcNow().UtcDateTime).SetProperty(a => a.AcknowledgedBy, "alice"));
        time.Advance(TimeSpan.FromMinutes(31));
        await router.RenotifyAsync(default);
        Assert.Equal(2, (await coordinator.NotificationsAsync()).Count); // acknowledged: no more repeats
        Assert.Equal(2, slack.Requests.Count);
    }
}
