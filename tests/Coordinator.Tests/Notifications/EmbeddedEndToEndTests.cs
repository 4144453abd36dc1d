using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Notifications;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Coordinator.Tests.Notifications;

/// <summary>The real way in embedded mode (SQLite, in-memory transport): a threshold rule, metric batches, Slack and maildev.</summary>
public sealed class EmbeddedEndToEndTests
{
    [Fact]
    public async Task DiskThreshold_FiresAfterFor_ResolvesWithHysteresis_SlackAndMailGetOneMessageEach()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var slack = new StubReceiver();
        var rule = TestServices.UniqueName("disk_usage").Replace('_', '-');
        await using var coordinator = NotificationsKit.Coordinator(Store.Sqlite)
            .With("Fleet:Alerts:EvaluationInterval", "00:10:00")
            .With("Fleet:Agents:HeartbeatTimeout", "1.00:00:00")
            .Slack("ops-slack", slack.Url(), "#ops").Email("ops-mail", "oncall@example.test").Route(0, "ops-slack", "ops-mail")
            .WithTime(time);
        _ = coordinator.Server;
        await new Protocol.V1.Rules.RulesClient(coordinator.Channel("alice")).CreateRuleAsync(new CreateRuleRequest
        {
            Yaml = $"""
                name: {rule}
                kind: threshold
                severity: warning
                expr: disk.used_ratio > 0.80
                for: 5m
                clear: 0.75
                summary: "Disk {"{{mount}}"} on {"{{host}}"} is {"{{value}}"} full"
                runbook: https://runbook.example/disk
                """,
        });
        await using var agent = RawAgentStream.Open(coordinator.Channel());
        await agent.HelloAsync(RawAgentStream.Hello("agent-e2e-web1", "web-1"));
        ulong counter = 0;
        async Task Sample(double value)
        {
            time.Advance(TimeSpan.FromSeconds(10)); // one sample per series and instant
            var sample = new MetricSample { Name = "disk.used_ratio", Value = value, TimeUnixMs = time.GetUtcNow().ToUnixTimeMilliseconds() };
            sample.Labels["mount"] = "/var";
            await agent.SendAsync(new AgentMessage
            {
                Batch = new Batch { Key = new BatchKey { Epoch = 42, Counter = ++counter }, Metrics = new MetricBatch { Samples = { sample } } },
            });
            Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await agent.ReceiveAsync()).BodyCase);
        }
        List<ReceivedRequest> Mine(IEnumerable<ReceivedRequest> all) => [.. all.Where(r => r.Body.Contains(rule, StringComparison.Ordinal))];
        var engine = coordinator.Services.GetRequiredService<AlertEngine>();
        async Task<List<AlertTransitionRecord>> Transitions()
        {
            await using var db = coordinator.Db();
            return await db.Set<AlertTransitionRecord>().AsNoTracking().Where(t => t.RuleName == rule).OrderBy(t => t.Id).ToListAsync();
        }

        await Sample(0.85);
        await Eventually.UntilAsync(async () => (await Transitions()).Count == 1, "the pending transition");
        time.Advance(TimeSpan.FromMinutes(5));
        // The sample fires it (evaluated as it arrives: pending for 5m10s >= for). No timer tick here: a tick racing the
        // sample's evaluation would promote the pending alert with the value it was pending with (0.85), a valid firing
        // too, but not the one this test checks the message of.
        await Sample(0.86);
        await Eventually.UntilAsync(() => Mine(slack.Accepted).Count == 1, "the firing message");
        // The lease runs on the fake clock: let both firing sends record their result before the clock moves past it.
        await Eventually.UntilAsync(async () => (await coordinator.NotificationsAsync()) is { Count: 2 } n && n.All(x => x.State == NotificationStates.Sent),
            "the firing notifications marked sent");

        await Sample(0.78); // between the clear and fire lines: still firing
        await engine.TickAsync(default);
        await Sample(0.70);
        await Eventually.UntilAsync(() => Mine(slack.Accepted).Count == 2, "the resolved message");
        var emails = await Eventually.UntilAsync(() => MailDev.EmailsAsync(rule), e => e.Count >= 2, "two emails");
        await Eventually.UntilAsync(async () => (await coordinator.NotificationsAsync()) is { Count: 4 } n && n.All(x => x.State == NotificationStates.Sent),
            "four notifications sent");

        Assert.Equal("pending,firing,resolved", string.Join(",", (await Transitions()).Select(t => t.Kind)));
        // The route takes every alert: count only this rule's messages (a default rule such as the watchdog may notify too).
        var requests = Mine(slack.Accepted); // delivered once each (a retried, refused request is not a delivery)
        Assert.Equal(2, requests.Count);
        Assert.Equal($"FIRING: {rule} on web-1", requests[0].Json.GetProperty("blocks")[0].GetProperty("text").GetProperty("text").GetString());
        Assert.Equal("Disk /var on web-1 is 0.86 full", requests[0].Json.GetProperty("blocks")[1].GetProperty("text").GetProperty("text").GetString());
        Assert.Equal($"RESOLVED: {rule} on web-1", requests[1].Json.GetProperty("blocks")[0].GetProperty("text").GetProperty("text").GetString());
        Assert.Equal(2, emails.Count);
        Assert.Equal([$"[FIRING] {rule} on web-1 (warning)", $"[RESOLVED] {rule} on web-1 (warning)"],
            emails.Select(e => e.GetProperty("subject").GetString()).Order());
    }
}
