using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Notifications;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Coordinator.Tests.Notifications;

public sealed class ReplicaDeliveryTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task TwoReplicas_OnOneDatabaseAndQueue_AndRedeliveredMessages_SendEachNotificationOnce()
    {
        using var hook = new StubReceiver();
        var queue = TestServices.UniqueName("fleet-notifications");
        CoordinatorFactory Replica() => NotificationsKit.Coordinator(Store.Postgres, postgres.ConnectionString, rabbit: true, queue: queue)
            .Webhook("pager", hook.Url(), "s3cret").Route(0, "pager");
        await using var a = Replica();
        await using var b = Replica();
        _ = a.Server;
        _ = b.Server;

        var transitions = new List<AlertTransitionRecord>();
        for (var i = 0; i < 10; i++)
        {
            transitions.Add(await a.TransitionAsync("disk_full", AlertTransitionKinds.Firing, $"web-{i}"));
            b.Services.GetRequiredService<AlertTransitions>().Wake(); // both routers race for every row
        }
        var rows = await Eventually.UntilAsync(() => a.NotificationsAsync(), n => n.Count == 10 && n.All(x => x.State == NotificationStates.Sent), "ten notifications sent");

        // The same NotificationDue again, through both buses and straight into both replicas' consumers at once.
        foreach (var row in rows)
        {
            await NotificationDue.SendAsync(a.Services.GetRequiredService<MassTransit.IBus>(), queue, row.Id, default);
            await Task.WhenAll(a.Services.GetRequiredService<NotificationDelivery>().DeliverAsync(row.Id, default),
                b.Services.GetRequiredService<NotificationDelivery>().DeliverAsync(row.Id, default));
        }
        // One more, after the duplicates: when its message has arrived, the ones sent before it have been consumed too
        // (one queue, in order, but consumed concurrently: wait for the row, then compare).
        var last = await a.TransitionAsync("disk_full", AlertTransitionKinds.Firing, "web-last");
        await Eventually.UntilAsync(() => hook.Accepted.Count == 11, "the eleventh message");

        Assert.Equal(11, hook.Requests.Count);
        Assert.Equal(11, hook.Requests.Select(r => r.Headers["Idempotency-Key"]).Distinct().Count());
        Assert.Equal(transitions.Select(t => t.Id).Append(last.Id).Order(), (await a.NotificationsAsync()).Select(n => n.TransitionId).Order());
        Assert.All(await a.NotificationsAsync(), n => Assert.Equal(1, n.Attempts));
    }
}

/// <summary>Its own database: the rate limit is a row every replica on one database shares.</summary>
public sealed class ReplicaRateLimitTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task TwoReplicas_ShareSlacksRateLimit_OneMessageASecond_EachAlertOnce()
    {
        using var slack = new StubReceiver();
        var queue = TestServices.UniqueName("fleet-notifications");
        CoordinatorFactory Replica() => NotificationsKit.Coordinator(Store.Postgres, postgres.ConnectionString, rabbit: true, queue: queue)
            .Slack("ops", slack.Url()).Route(0, "ops").With("Fleet:Notifications:Receivers:ops:MaxBatch", "5");
        await using var a = Replica();
        await using var b = Replica();
        _ = a.Server;
        _ = b.Server;
        var rule = TestServices.UniqueName("load");

        for (var i = 0; i < 20; i++)
        {
            await (i % 2 == 0 ? a : b).TransitionAsync(rule, AlertTransitionKinds.Firing, $"app-{i}");
            (i % 2 == 0 ? b : a).Services.GetRequiredService<AlertTransitions>().Wake();
        }
        await Eventually.UntilAsync(async () => (await a.NotificationsAsync()).Count(n => n.Receiver == "ops" && n.State == NotificationStates.Sent) == 20,
            "twenty notifications sent", TimeSpan.FromSeconds(60));

        var messages = slack.Requests.Where(r => r.Body.Contains(rule, StringComparison.Ordinal)).ToList();
        Assert.All(messages, m => Assert.Equal(200, m.AnsweredWith));
        for (var i = 1; i < messages.Count; i++)
            Assert.True(messages[i].At - messages[i - 1].At >= TimeSpan.FromMilliseconds(950),
                $"message {i + 1} arrived {(messages[i].At - messages[i - 1].At).TotalMilliseconds:0} ms after the one before: the replicas did not share the rate");
        var hosts = messages.SelectMany(m => System.Text.RegularExpressions.Regex.Matches(m.Body, @"app-\d+").Select(x => x.Value).Distinct()).ToList();
        Assert.Equal(20, hosts.Count);
        Assert.Equal(20, hosts.Distinct().Count());
        Assert.InRange(messages.Count, 4, 20);
    }
}
