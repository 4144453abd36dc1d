using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Notifications;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Testing;

namespace Fleet.Coordinator.Tests.Notifications;

public sealed class SlackAndEmailTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task FiringThenResolved_SlackGetsTwoMessages_AndMailDevOneEmailEach_OverRabbitMq()
    {
        using var slack = new StubReceiver();
        var alert = TestServices.UniqueName("disk_full");
        await using var coordinator = NotificationsKit.Coordinator(Store.Postgres, postgres.ConnectionString, rabbit: true)
            .Slack("ops-slack", slack.Url(), "#ops").Email("ops-mail", "oncall@example.test").Route(0, "ops-slack", "ops-mail")
            .With("Fleet:Notifications:HostUrl", "https://fleet.example.test/hosts/{host}");
        _ = coordinator.Server;

        var firing = await coordinator.TransitionAsync(alert, AlertTransitionKinds.Firing, "web-1", value: 0.93);
        await Eventually.UntilAsync(() => slack.Accepted.Count == 1, "the firing message at the Slack stand-in");
        await coordinator.TransitionAsync(alert, AlertTransitionKinds.Resolved, "web-1", value: 0.41, ruleId: firing.RuleId);
        await Eventually.UntilAsync(async () => (await coordinator.NotificationsAsync()) is { Count: 4 } n && n.All(x => x.State == NotificationStates.Sent),
            "four notifications (2 transitions × 2 receivers) marked sent");
        var emails = await Eventually.UntilAsync(() => MailDev.EmailsAsync(alert), e => e.Count >= 2, "two emails at maildev");

        Assert.Equal(2, slack.Requests.Count);
        var (first, second) = (slack.Requests[0].Json, slack.Requests[1].Json);
        Assert.Equal("#ops", first.GetProperty("channel").GetString());
        var header = first.GetProperty("blocks")[0];
        Assert.Equal("header", header.GetProperty("type").GetString());
        Assert.Equal($"FIRING: {alert} on web-1", header.GetProperty("text").GetProperty("text").GetString());
        var fields = string.Join("|", first.GetProperty("blocks")[2].GetProperty("fields").EnumerateArray().Select(f => f.GetProperty("text").GetString()));
        Assert.Equal("*Host*\n<https://fleet.example.test/hosts/web-1|web-1>|*Value*\n0.93|*Threshold*\n0.8|*Severity*\ncritical", fields);
        Assert.Contains("<https://runbook.example/disk-full|Runbook>", first.GetRawText().Replace("\\u003C", "<").Replace("\\u003E", ">"));
        Assert.Equal($"RESOLVED: {alert} on web-1", second.GetProperty("blocks")[0].GetProperty("text").GetProperty("text").GetString());
        Assert.Contains("Resolved: Disk / on web-1", second.GetProperty("blocks")[1].GetProperty("text").GetProperty("text").GetString());

        Assert.Equal(2, emails.Count);
        var subjects = emails.Select(e => e.GetProperty("subject").GetString()).Order().ToList();
        Assert.Equal([$"[FIRING] {alert} on web-1 (critical)", $"[RESOLVED] {alert} on web-1 (critical)"], subjects);
        var firingMail = emails.Single(e => e.GetProperty("subject").GetString()!.StartsWith("[FIRING]", StringComparison.Ordinal));
        Assert.Contains("Value: 0.93", firingMail.GetProperty("text").GetString());
        Assert.Contains("Host link: https://fleet.example.test/hosts/web-1", firingMail.GetProperty("text").GetString());
        Assert.Contains("<th align=\"left\">Runbook</th><td><a href=\"https://runbook.example/disk-full\">", firingMail.GetProperty("html").GetString());
        Assert.Equal("oncall@example.test", firingMail.GetProperty("to")[0].GetProperty("address").GetString());
    }
}
