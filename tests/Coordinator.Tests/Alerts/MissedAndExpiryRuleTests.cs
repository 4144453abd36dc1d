using System.Text.Json;
using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Checklists;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Schedules;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;

namespace Fleet.Coordinator.Tests.Alerts;

/// <summary>window_missed, checklist_missed and tls_expiry on real storage with the fake clock, and their validation.</summary>
public sealed class MissedAndExpiryRuleTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    static ScheduleSpec Spec(string id, string cron) => new(id, id, "", cron, "UTC", TimeSpan.FromHours(1), TimeSpan.Zero, OnClose.Cancel,
        ["*"], [], [new StepSpec("", "apt.upgrade", [], true, "", "", "")], MisfirePolicy.Skip, OverlapPolicy.Alongside);

    static async Task AddScheduleAsync(AlertsHarness h, ScheduleSpec spec, DateTime activeFrom)
    {
        await using var db = h.Db();
        db.Add(new ScheduleRecord
        {
            Id = spec.Id, Name = spec.Name, SpecJson = spec.ToJson(), ActiveFrom = activeFrom, CreatedAt = activeFrom, UpdatedAt = activeFrom, CreatedBy = "alice",
        });
        await db.SaveChangesAsync();
    }

    static async Task AddOccurrenceAsync(AlertsHarness h, ScheduleSpec spec, DateTime at, OccurrenceState state, string reason, params StepState[] steps)
    {
        await using var db = h.Db();
        db.Add(new OccurrenceRecord
        {
            Id = ScheduleIds.Occurrence(spec.Id, at), ScheduleId = spec.Id, ScheduledUtc = at, EndsUtc = at + spec.Duration, Kind = OccurrenceKind.Scheduled,
            State = state, Reason = reason, SpecJson = spec.ToJson(), StepsJson = JsonSerializer.Serialize(steps.ToList()), ClaimedAt = at,
            OpenedAt = state == OccurrenceState.Missed ? null : at, ClosedAt = at.AddMinutes(20), CreatedBy = "schedule:" + spec.Id,
        });
        await db.SaveChangesAsync();
    }

    [Fact]
    public async Task WindowMissed_FiresForAMissedOccurrence_ResolvesWhenTheNextSucceeds_AndNamesTheHostOfAFailedStep()
    {
        await using var h = new AlertsHarness(Store.Postgres, postgres.ConnectionString);
        await h.RuleAsync("""
            name: nightly-missed
            kind: window_missed
            severity: warning
            schedule: nightly
            summary: "Window {{schedule}} did not run: {{reason}}"
            """);
        var spec = Spec("nightly", "0 3 * * *");
        var today = h.Now.Date;
        await AddScheduleAsync(h, spec, today);
        await AddOccurrenceAsync(h, spec, today.AddHours(3), OccurrenceState.Missed, "noticed late (misfire: skip)");

        await h.Engine.TickAsync(default);
        var alert = Assert.Single(await h.AlertsAsync("nightly-missed"));
        Assert.Equal(AlertStates.Firing, alert.State);
        var labels = AlertLabels.Parse(alert.LabelsJson);
        Assert.Equal("nightly", labels["schedule"]);
        Assert.False(labels.ContainsKey("host"));
        var annotations = AlertLabels.Parse(alert.AnnotationsJson);
        Assert.Equal(("missed", "noticed late (misfire: skip)"), (annotations["state"], annotations["reason"]));
        Assert.Equal(today.AddHours(3), DateTime.Parse(annotations["scheduled"], null, System.Globalization.DateTimeStyles.RoundtripKind));
        Assert.Equal(new DateTimeOffset(today.AddHours(3)).ToUnixTimeSeconds(), alert.Value);
        Assert.Equal("Window nightly did not run: noticed late (misfire: skip)", annotations["summary"]);

        // The next night's window succeeds: resolved. (Each occurrence is written before the clock passes it, as the
        // scheduler would: the engine's own timer ticks when the fake clock jumps, and would see an unclaimed fire time.)
        await AddOccurrenceAsync(h, spec, today.AddDays(1).AddHours(3), OccurrenceState.Succeeded, "steps finished",
            new StepState { Index = 0, Task = "apt.upgrade", State = StepState.Succeeded, RunId = "r-none" });
        h.Time.Advance(TimeSpan.FromDays(1));
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Resolved, Assert.Single(await h.AlertsAsync("nightly-missed")).State);

        // The night after, the step fails on web-1 (web-2 succeeds): one alert for that host.
        var at = today.AddDays(2).AddHours(3);
        var runId = ScheduleIds.StepRun(spec.Id, at, 0);
        await using (var db = h.Db())
        {
            db.Runs.Add(new RunRecord { Id = runId, Task = "apt.upgrade", CreatedBy = "schedule:nightly", CreatedAt = at, Status = RunStatus.Failed, FinishedAt = at.AddMinutes(10) });
            foreach (var (agent, host, state) in new[] { ("agent-w1", "web-1", InvocationState.Failed), ("agent-w2", "web-2", InvocationState.Succeeded) })
                db.Invocations.Add(new InvocationRecord
                {
                    Id = runId + "." + agent, RunId = runId, AgentId = agent, Hostname = host, State = state, CreatedAt = at, UpdatedAt = at,
                    FinishedAt = at.AddMinutes(10), ExitCode = state == InvocationState.Failed ? 100 : 0, Error = state == InvocationState.Failed ? "dpkg lock" : "",
                });
            await db.SaveChangesAsync();
        }
        await AddOccurrenceAsync(h, spec, at, OccurrenceState.Failed, "steps finished",
            new StepState { Index = 0, Task = "apt.upgrade", State = StepState.Failed, Reason = "run failed", RunId = runId });
        h.Time.Advance(TimeSpan.FromDays(1));
        await h.Engine.TickAsync(default);
        var alerts = await h.AlertsAsync("nightly-missed");
        Assert.Equal(2, alerts.Count);
        Assert.Equal(AlertStates.Resolved, alerts[0].State); // the schedule-wide one stays resolved
        var perHost = alerts[1];
        Assert.Equal(AlertStates.Firing, perHost.State);
        Assert.Equal(("nightly", "web-1", "agent-w1"), (AlertLabels.Parse(perHost.LabelsJson)["schedule"], AlertLabels.Parse(perHost.LabelsJson)["host"], AlertLabels.Parse(perHost.LabelsJson)["agent_id"]));
        Assert.Contains("dpkg lock", AlertLabels.Parse(perHost.AnnotationsJson)["reason"]);
        Assert.Equal("firing,resolved,firing", AlertsHarness.Kinds(await h.TransitionsAsync("nightly-missed")));
    }

    [Theory]
    [InlineData(Store.Sqlite)]
    [InlineData(Store.Postgres)]
    public async Task WindowMissed_FiresWhenAFireTimePassesUnclaimed_AndResolvesWhenItsOccurrenceSucceeds(Store store)
    {
        await using var h = new AlertsHarness(store, postgres.ConnectionString);
        var suffix = store.ToString().ToLowerInvariant();
        var rule = "unclaimed-" + suffix;
        await h.RuleAsync($"""
            name: {rule}
            kind: window_missed
            severity: critical
            within: 6h
            """);
        var spec = Spec("late-" + suffix, "30 11 * * *");
        await AddScheduleAsync(h, spec, h.Now.AddHours(-1)); // 11:00; it fires 11:30, now is 12:00 and no scheduler runs

        await h.Engine.TickAsync(default);
        var alert = Assert.Single(await h.AlertsAsync(rule));
        Assert.Equal(AlertStates.Firing, alert.State);
        Assert.Equal(spec.Id, AlertLabels.Parse(alert.LabelsJson)["schedule"]);
        var annotations = AlertLabels.Parse(alert.AnnotationsJson);
        Assert.Equal("unclaimed", annotations["state"]);
        Assert.Contains("no coordinator claimed", annotations["reason"]);

        h.Time.Advance(TimeSpan.FromMinutes(1));
        await AddOccurrenceAsync(h, spec, h.Now.Date.AddHours(11).AddMinutes(30), OccurrenceState.Succeeded, "steps finished",
            new StepState { Index = 0, Task = "apt.upgrade", State = StepState.Succeeded, RunId = "r-none" });
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Resolved, Assert.Single(await h.AlertsAsync(rule)).State);
    }

    [Fact]
    public async Task ChecklistMissed_OneAlertPerMissedItem_ResolvedBySignOff_AndByTheNextPeriod()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.Combine("checklists.yaml"), """
            items:
              - id: verify-backups
                title: Verify backups
                period: daily
              - id: apply-updates
                title: Apply updates
                period: daily
                tasks: [apt.upgrade]
              - id: review-access
                title: Review access
                period: weekly
            """);
        await using var h = new AlertsHarness(Store.Postgres, postgres.ConnectionString,
            settings: new Dictionary<string, string> { ["Fleet:Checklists:File"] = dir.Combine("checklists.yaml") });
        await h.RuleAsync("""
            name: daily-checklist
            kind: checklist_missed
            severity: warning
            checklist: daily
            """);
        await h.Engine.TickAsync(default);
        Assert.Empty(await h.AlertsAsync("daily-checklist")); // yesterday started before the rule existed

        var day = h.Now.Date.AddDays(1);
        var period = CalendarPeriod.Containing(PeriodKind.Daily, day).Text;
        h.Time.Advance(TimeSpan.FromHours(36)); // midnight after "day": its period is over
        await h.Engine.TickAsync(default);
        var alerts = await h.AlertsAsync("daily-checklist");
        Assert.Equal(2, alerts.Count);
        Assert.All(alerts, a => Assert.Equal(AlertStates.Firing, a.State));
        var byItem = alerts.ToDictionary(a => AlertLabels.Parse(a.LabelsJson)["item"]);
        Assert.Equal(["apply-updates", "verify-backups"], byItem.Keys.Order());
        var labels = AlertLabels.Parse(byItem["verify-backups"].LabelsJson);
        Assert.Equal(("daily", period), (labels["checklist"], labels["period"]));
        Assert.Equal($"not signed off for {period}", AlertLabels.Parse(byItem["verify-backups"].AnnotationsJson)["reason"]);
        Assert.Contains("apt.upgrade", AlertLabels.Parse(byItem["apply-updates"].AnnotationsJson)["reason"]);

        await using (var db = h.Db())
        {
            db.Add(new ChecklistSignOffRecord { ItemId = "verify-backups", Period = period, SignedBy = "alice", SignedAt = h.Now, Comment = "restored one" });
            await db.SaveChangesAsync();
        }
        h.Time.Advance(TimeSpan.FromMinutes(1));
        await h.Engine.TickAsync(default);
        byItem = (await h.AlertsAsync("daily-checklist")).ToDictionary(a => AlertLabels.Parse(a.LabelsJson)["item"] + "/" + AlertLabels.Parse(a.LabelsJson)["period"]);
        Assert.Equal(AlertStates.Resolved, byItem[$"verify-backups/{period}"].State);
        Assert.Equal(AlertStates.Firing, byItem[$"apply-updates/{period}"].State);

        h.Time.Advance(TimeSpan.FromDays(1)); // the next day is over too: the older period is no longer the last one
        await h.Engine.TickAsync(default);
        byItem = (await h.AlertsAsync("daily-checklist")).ToDictionary(a => AlertLabels.Parse(a.LabelsJson)["item"] + "/" + AlertLabels.Parse(a.LabelsJson)["period"]);
        Assert.Equal(AlertStates.Resolved, byItem[$"apply-updates/{period}"].State);
        var next = CalendarPeriod.Containing(PeriodKind.Daily, day.AddDays(1)).Text;
        Assert.Equal(AlertStates.Firing, byItem[$"apply-updates/{next}"].State);
    }

    static ProbeResult Tls(string target, double daysLeft, DateTime at) => new()
    {
        Name = "certs-" + target.Split(':')[0], Kind = "tls", Target = target, Ok = daysLeft >= 14, Values = { ["tls.days_left"] = daysLeft },
        TimeUnixMs = new DateTimeOffset(at).ToUnixTimeMilliseconds(),
    };

    [Theory]
    [InlineData(Store.Sqlite)]
    [InlineData(Store.Postgres)]
    public async Task TlsExpiry_FiresForACertificateExpiringWithinDays_AndResolvesWhenRenewed(Store store)
    {
        await using var h = new AlertsHarness(store, postgres.ConnectionString);
        await h.RuleAsync("""
            name: tls-soon
            kind: tls_expiry
            severity: warning
            days: 14
            summary: "{{target}} on {{host}}: {{value}} days left"
            """);
        var agent = await h.AgentAsync("agent-tls-" + store.ToString().ToLowerInvariant(), "edge-7");
        await h.SendAsync(agent, new Batch { Metrics = new MetricBatch { Probes = { Tls("shop.example:443", 10.5, h.Now), Tls("api.example:443", 60, h.Now) } } });
        h.Time.Advance(TimeSpan.FromHours(12));
        await h.Engine.TickAsync(default);

        var alert = Assert.Single(await h.AlertsAsync("tls-soon"));
        Assert.Equal(AlertStates.Firing, alert.State);
        var labels = AlertLabels.Parse(alert.LabelsJson);
        Assert.Equal(("edge-7", "shop.example:443"), (labels["host"], labels["target"]));
        Assert.Equal(10.0, alert.Value); // 10.5 days at the probe, half a day ago
        var annotations = AlertLabels.Parse(alert.AnnotationsJson);
        Assert.Equal("shop.example:443 on edge-7: 10 days left", annotations["summary"]);
        Assert.Equal("14", annotations["threshold"]);
        Assert.StartsWith(h.Now.AddDays(10).ToString("yyyy-MM-ddTHH:mm", System.Globalization.CultureInfo.InvariantCulture), annotations["not_after"]);

        await h.SendAsync(agent, new Batch { Metrics = new MetricBatch { Probes = { Tls("shop.example:443", 89.9, h.Now) } } });
        h.Time.Advance(TimeSpan.FromMinutes(1));
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Resolved, Assert.Single(await h.AlertsAsync("tls-soon")).State);
        Assert.Equal("firing,resolved", AlertsHarness.Kinds(await h.TransitionsAsync("tls-soon")));
    }

    [Theory]
    [InlineData("kind: tls_expiry\ndays: -1", "days", "-1")]
    [InlineData("kind: tls_expiry\ndays: 0", "days", "0")]
    [InlineData("kind: tls_expiry\ndays: soon", "days", "soon")]
    [InlineData("kind: window_missed\nwithin: 5 hours", "within", "5 hours")]
    [InlineData("kind: window_missed\nschedule: Nightly Window", "schedule", "Nightly Window")]
    [InlineData("kind: checklist_missed\nchecklist: hourly", "checklist", "hourly")]
    [InlineData("kind: probe\nprobe: app\nremediate: { task: 'restart the service!' }", "remediate.task", "restart the service!")]
    [InlineData("kind: probe\nprobe: app\nremediate: { task: service.restart, parameters: { 'bad name': x } }", "remediate.parameters", "bad name")]
    [InlineData("kind: probe\nprobe: app\nremediate: { taks: service.restart }", "unknown field", "remediate.taks")]
    [InlineData("kind: watchdog\nremediate: { task: service.restart }", "remediate", "watchdog")]
    [InlineData("kind: probe\nprobe: app\nremediate: { task: service.restart, confirm: maybe }", "remediate.confirm", "maybe")]
    public async Task NewFields_BadValues_AreInvalidArgumentNamingTheFieldAndValue(string body, string field, string value)
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        var yaml = "name: bad\nseverity: warning\n" + body + "\n";
        var ex = await Assert.ThrowsAsync<RpcException>(() => h.Rules().CreateRuleAsync(new CreateRuleRequest { Yaml = yaml }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith(field, ex.Status.Detail.Replace("yaml: ", "", StringComparison.Ordinal));
        Assert.Contains($"'{value}'", ex.Status.Detail);
        Assert.Empty((await h.Rules().ListRulesAsync(new ListRulesRequest())).Rules);
    }

    [Fact]
    public async Task Remediation_IsStoredWithTheRule_AndShownByTheApi()
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        var rule = await h.RuleAsync("""
            name: nginx-down
            kind: probe
            severity: critical
            probe: nginx
            remediate:
              task: service.restart
              parameters: { service: nginx }
              confirm: true
            """);
        Assert.Equal(("service.restart", "nginx", true), (rule.Remediate.Task, rule.Remediate.Parameters["service"], rule.Remediate.Confirm));
        var stored = await h.Rules().GetRuleAsync(new GetRuleRequest { Name = "nginx-down" });
        Assert.Equal(rule.Remediate, stored.Remediate);
    }
}
