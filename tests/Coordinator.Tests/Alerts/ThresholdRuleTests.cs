using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Testing;

namespace Fleet.Coordinator.Tests.Alerts;

public sealed class ThresholdRuleTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    const string DiskRule = """
        name: disk
        kind: threshold
        severity: warning
        expr: disk.used_ratio > 0.80
        for: 5m
        clear: 0.75
        summary: "Disk {{mount}} on {{host}} is {{value}} full (threshold {{threshold}})"
        runbook: https://runbook.example/disk
        """;

    public static TheoryData<Store> Stores => new() { Store.Sqlite, Store.Postgres };

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Threshold_FiresAfterFor_NotBefore_AndTheTransitionCarriesLabelsAndAnnotations(Store store)
    {
        await using var h = new AlertsHarness(store, postgres.ConnectionString);
        var rule = "disk-" + store.ToString().ToLowerInvariant();
        await h.RuleAsync(DiskRule.Replace("name: disk", "name: " + rule));
        var agent = await h.AgentAsync("agent-web1-" + store.ToString().ToLowerInvariant(), "web-1");

        await h.SampleAsync(agent, "disk.used_ratio", 0.85, ("mount", "/var"));
        await h.SampleAsync(agent, "disk.used_ratio", 0.40, ("mount", "/"));
        var pending = Assert.Single(await h.WaitAsync(rule, a => a.Count == 1 && a[0].State == AlertStates.Pending, "a pending alert"));

        // No sample at 4:59: its evaluation runs after the ack, so it could still be queued when the clock moves on to
        // 5:00 and fire the alert itself (with its own value), instead of the timer this test is about.
        h.Time.Advance(TimeSpan.FromMinutes(4) + TimeSpan.FromSeconds(59));
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Pending, Assert.Single(await h.AlertsAsync(rule)).State);

        h.Time.Advance(TimeSpan.FromSeconds(1));
        await h.Engine.TickAsync(default); // no new sample needed: the timer promotes it when `for` has passed
        var firing = Assert.Single(await h.AlertsAsync(rule));
        Assert.Equal(AlertStates.Firing, firing.State);
        Assert.Equal(pending.Id, firing.Id);

        var transitions = await h.TransitionsAsync(rule);
        Assert.Equal("pending,firing", AlertsHarness.Kinds(transitions));
        Assert.All(transitions, t => Assert.Equal(1, t.Episode));
        var fired = transitions[1];
        Assert.Equal("warning", fired.Severity);
        Assert.Null(fired.RoutedAt);
        var labels = AlertLabels.Parse(fired.LabelsJson);
        Assert.Equal("web-1", labels["host"]);
        Assert.Equal("/var", labels["mount"]);
        Assert.Equal(rule, labels["alertname"]);
        Assert.Equal(AlertLabels.Fingerprint(labels), fired.Fingerprint);
        var annotations = AlertLabels.Parse(fired.AnnotationsJson);
        Assert.Equal("Disk /var on web-1 is 0.85 full (threshold 0.8)", annotations["summary"]);
        Assert.Equal("https://runbook.example/disk", annotations["runbook"]);
        Assert.Equal("0.8", annotations["threshold"]);
    }

    [Fact]
    public async Task Hysteresis_HoveringBetweenClearAndFire_DoesNotFlap_ThenResolvesBelowClear()
    {
        await using var h = new AlertsHarness(Store.Postgres, postgres.ConnectionString);
        await h.RuleAsync(DiskRule.Replace("name: disk", "name: disk-hyst"));
        var agent = await h.AgentAsync("agent-hyst", "web-2");
        await h.SampleAsync(agent, "disk.used_ratio", 0.85, ("mount", "/"));
        await h.WaitAsync("disk-hyst", a => a.Count == 1 && a[0].State == AlertStates.Pending, "pending");
        h.Time.Advance(TimeSpan.FromMinutes(5));
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Firing, Assert.Single(await h.AlertsAsync("disk-hyst")).State);

        foreach (var v in new[] { 0.79, 0.81, 0.76, 0.80, 0.78, 0.82, 0.751 })
        {
            h.Time.Advance(TimeSpan.FromSeconds(30));
            await h.SampleAsync(agent, "disk.used_ratio", v, ("mount", "/"));
        }
        h.Time.Advance(TimeSpan.FromSeconds(30));
        await h.SampleAsync(agent, "disk.used_ratio", 0.74, ("mount", "/"));
        var resolved = Assert.Single(await h.WaitAsync("disk-hyst", a => a.Count == 1 && a[0].State == AlertStates.Resolved, "resolved below the clear line"));
        Assert.Equal(0.74, resolved.Value);
        // Samples are evaluated in order, so every hovering value was seen before the resolve: none of them changed anything.
        Assert.Equal("pending,firing,resolved", AlertsHarness.Kinds(await h.TransitionsAsync("disk-hyst")));

        // Going above again is a new episode; hovering below the fire line while resolved does not start one.
        await h.SampleAsync(agent, "disk.used_ratio", 0.79, ("mount", "/"));
        await h.SampleAsync(agent, "disk.used_ratio", 0.9, ("mount", "/"));
        await h.WaitAsync("disk-hyst", a => a[0].State == AlertStates.Pending, "a new pending episode");
        var transitions = await h.TransitionsAsync("disk-hyst");
        Assert.Equal("pending,firing,resolved,pending", AlertsHarness.Kinds(transitions));
        Assert.Equal(2, transitions[^1].Episode);
    }

    [Fact]
    public async Task PendingAlert_DroppingBelowClearBeforeFor_GoesInactive_WithoutAResolvedNotice()
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        await h.RuleAsync(DiskRule);
        var agent = await h.AgentAsync("agent-blip", "web-3");
        await h.SampleAsync(agent, "disk.used_ratio", 0.9, ("mount", "/"));
        await h.WaitAsync("disk", a => a.Count == 1 && a[0].State == AlertStates.Pending, "pending");
        h.Time.Advance(TimeSpan.FromMinutes(1));
        await h.SampleAsync(agent, "disk.used_ratio", 0.5, ("mount", "/"));
        await h.WaitAsync("disk", a => a[0].State == AlertStates.Inactive, "inactive");
        h.Time.Advance(TimeSpan.FromMinutes(10));
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Inactive, Assert.Single(await h.AlertsAsync("disk")).State);
        Assert.Equal("pending", AlertsHarness.Kinds(await h.TransitionsAsync("disk")));
    }

    [Fact]
    public async Task FiringThreshold_WhoseSeriesStopsReporting_ResolvesAfterStaleAfter()
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        await h.RuleAsync("""
            name: inodes
            kind: threshold
            severity: warning
            expr: disk.inodes_used_ratio{mount="/mnt"} > 0.9
            """);
        var agent = await h.AgentAsync("agent-stale", "nfs-1");
        await h.SampleAsync(agent, "disk.inodes_used_ratio", 0.95, ("mount", "/mnt"));
        await h.SampleAsync(agent, "disk.inodes_used_ratio", 0.99, ("mount", "/"));
        await h.WaitAsync("inodes", a => a.Count == 1 && a[0].State == AlertStates.Firing, "firing (for: 0)");
        h.Time.Advance(TimeSpan.FromMinutes(10));
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Firing, Assert.Single(await h.AlertsAsync("inodes")).State);
        h.Time.Advance(TimeSpan.FromMinutes(6));
        await h.Engine.TickAsync(default);
        var resolved = Assert.Single(await h.AlertsAsync("inodes"));
        Assert.Equal(AlertStates.Resolved, resolved.State);
        Assert.StartsWith("no sample since", AlertLabels.Parse(resolved.AnnotationsJson)["stale"]);
    }
}
