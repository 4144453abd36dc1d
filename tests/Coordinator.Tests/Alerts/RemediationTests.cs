using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Coordinator.Tests.Alerts;

/// <summary>A rule's remediation: one run per firing on the alert's host, however many coordinators look; a refusal audited once.</summary>
public sealed class RemediationTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    static TaskDescriptor ServiceRestart() => new()
    {
        Name = "service.restart",
        Description = "restarts a systemd unit",
        Parameters = { new ParameterSchema { Name = "service", Type = ParameterSchema.Types.Type.String, Required = true, Pattern = "[a-z0-9@._-]+" } },
    };

    static string Rule(string name, string task) => $"""
        name: {name}
        kind: threshold
        severity: critical
        expr: nginx.workers < 1
        remediate:
          task: {task}
          parameters: {"{"} service: nginx {"}"}
        """;

    /// <summary>Two coordinators on one database, each with the rule loaded, and <paramref name="agents"/> hosts whose alert fires.</summary>
    async Task<(AlertsHarness A, AlertsHarness B, List<AlertTransitionRecord> Firing)> FireAsync(string rule, string task, string prefix, int agents, FakeTimeProvider time)
    {
        var a = new AlertsHarness(Store.Postgres, postgres.ConnectionString, time: time);
        var b = new AlertsHarness(Store.Postgres, postgres.ConnectionString, time: time);
        await a.RuleAsync(Rule(rule, task));
        await b.Engine.TickAsync(default); // b learns the rule
        for (var i = 0; i < agents; i++)
        {
            var stream = await a.AgentAsync($"{prefix}-{i}", $"{prefix}-web-{i}", ServiceRestart());
            await a.SampleAsync(stream, "nginx.workers", 0);
        }
        var alerts = await a.WaitAsync(rule, x => x.Count == agents && x.All(y => y.State == AlertStates.Firing), $"{agents} firing");
        return (a, b, (await a.TransitionsAsync(rule)).Where(t => t.Kind == AlertTransitionKinds.Firing).ToList());
    }

    static Task<int[]> RaceAsync(AlertsHarness a, AlertsHarness b) =>
        Task.WhenAll(Enumerable.Range(0, 3).SelectMany(_ => new[] { a.Remediation.RemediateOnceAsync(default), b.Remediation.RemediateOnceAsync(default) }));

    [Fact]
    public async Task Remediation_CreatesExactlyOneRunPerFiring_WhenTwoCoordinatorsEvaluate()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(DateTime.UtcNow.Date.AddHours(12), TimeSpan.Zero));
        var (a, b, firing) = await FireAsync("nginx-stuck", "service.restart", "agent-rem", 5, time);
        await using var _a = a;
        await using var _b = b;
        await RaceAsync(a, b);
        await RaceAsync(a, b);

        await using var db = a.Db();
        var tokens = firing.Select(t => AlertRemediation.ClientToken(t.Id)).ToList();
        var runs = await db.Runs.AsNoTracking().Where(r => r.ClientToken != null && tokens.Contains(r.ClientToken)).ToListAsync();
        Assert.Equal(5, runs.Count);
        Assert.All(runs, r => Assert.Equal(("service.restart", "rule:nginx-stuck"), (r.Task, r.CreatedBy)));
        Assert.All(runs, r => Assert.Contains("\"service\":\"nginx\"", r.ParametersJson));
        var invocations = await db.Invocations.AsNoTracking().Where(i => runs.Select(r => r.Id).Contains(i.RunId)).ToListAsync();
        Assert.Equal(
            firing.Select(t => AlertLabels.Parse(t.LabelsJson)["agent_id"]).Order(),
            invocations.Select(i => i.AgentId).Order());

        var audits = await db.Set<AuditRecord>().AsNoTracking().Where(r => r.Action == "alert.remediated").ToListAsync();
        Assert.Equal(5, audits.Count(r => r.ParametersJson.Contains("nginx-stuck", StringComparison.Ordinal)));
        Assert.All(runs, r => Assert.Single(audits, x => x.ParametersJson.Contains(r.Id, StringComparison.Ordinal)));
        Assert.Empty(await db.Set<AuditRecord>().AsNoTracking().Where(r => r.Action == "alert.remediation_refused" && r.ParametersJson.Contains("nginx-stuck")).ToListAsync());
        var outcomes = (await a.TransitionsAsync("nginx-stuck")).Where(t => t.Kind == AlertTransitionKinds.Remediation).ToList();
        Assert.Equal(5, outcomes.Count);
        Assert.All(outcomes, o => Assert.NotNull(o.RoutedAt)); // nothing to notify
    }

    [Fact]
    public async Task Remediation_OnSqlite_RunsOnceOnTheAlertsHost()
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        await h.RuleAsync(Rule("nginx-sqlite", "service.restart"));
        var stream = await h.AgentAsync("agent-sqlite", "db-3", ServiceRestart());
        await h.SampleAsync(stream, "nginx.workers", 0);
        await h.WaitAsync("nginx-sqlite", x => x.Count == 1 && x[0].State == AlertStates.Firing, "firing");
        await h.Remediation.RemediateOnceAsync(default);
        await h.Remediation.RemediateOnceAsync(default);

        var firing = Assert.Single(await h.TransitionsAsync("nginx-sqlite"), t => t.Kind == AlertTransitionKinds.Firing);
        await using var db = h.Db();
        var token = AlertRemediation.ClientToken(firing.Id);
        var run = await db.Runs.AsNoTracking().SingleAsync(r => r.ClientToken == token);
        Assert.Equal("agent-sqlite", (await db.Invocations.AsNoTracking().SingleAsync(i => i.RunId == run.Id)).AgentId);
        var audit = await db.Set<AuditRecord>().AsNoTracking().SingleAsync(r => r.Action == "alert.remediated");
        Assert.Contains(run.Id, audit.ParametersJson);
        Assert.Equal("agent-sqlite", audit.Host);
    }

    [Fact]
    public async Task Remediation_IsRefused_WhileTheHostIsInAnOpenMaintenanceWindow_WithNoRun()
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        await h.RuleAsync(Rule("nginx-window", "service.restart"));
        var stream = await h.AgentAsync("agent-window", "web-5", ServiceRestart());
        await using (var db = h.Db())
        {
            var now = DateTime.UtcNow;
            db.Set<Fleet.Coordinator.Schedules.OccurrenceRecord>().Add(new Fleet.Coordinator.Schedules.OccurrenceRecord
            {
                Id = "nginx-upgrade@test", ScheduleId = "nginx-upgrade", ScheduledUtc = now.AddDays(-1), EndsUtc = now.AddDays(30),
                State = Fleet.Coordinator.Schedules.OccurrenceState.Open, SpecJson = "{}", HostsJson = "[\"agent-window\"]", ClaimedAt = now, OpenedAt = now, CreatedBy = "test",
            });
            await db.SaveChangesAsync();
        }
        await h.SampleAsync(stream, "nginx.workers", 0);
        await h.WaitAsync("nginx-window", x => x.Count == 1 && x[0].State == AlertStates.Firing, "firing");
        await h.Remediation.RemediateOnceAsync(default);
        await h.Remediation.RemediateOnceAsync(default);

        await using var check = h.Db();
        Assert.Equal(0, await check.Runs.AsNoTracking().CountAsync(r => r.ClientToken!.StartsWith(AlertRemediation.TokenPrefix)));
        var refused = await check.Set<AuditRecord>().AsNoTracking().SingleAsync(r => r.Action == "alert.remediation_refused");
        Assert.Contains("maintenance window nginx-upgrade", refused.ParametersJson + refused.Outcome);
    }

    [Fact]
    public async Task Remediation_TheHostDoesNotOffer_IsRefusedAndAuditedOnce_WithNoRun()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(DateTime.UtcNow.Date.AddHours(12), TimeSpan.Zero));
        var (a, b, firing) = await FireAsync("nginx-reload", "nginx.reload", "agent-ref", 1, time);
        await using var _a = a;
        await using var _b = b;
        await RaceAsync(a, b);
        time.Advance(TimeSpan.FromMinutes(1));
        await RaceAsync(a, b);

        await using var db = a.Db();
        var token = AlertRemediation.ClientToken(Assert.Single(firing).Id);
        Assert.False(await db.Runs.AnyAsync(r => r.ClientToken == token));
        var refused = Assert.Single(await db.Set<AuditRecord>().AsNoTracking().Where(r => r.Action == "alert.remediation_refused").ToListAsync(),
            r => r.ParametersJson.Contains("nginx-reload", StringComparison.Ordinal));
        Assert.Contains("nginx.reload", refused.ParametersJson);
        Assert.Contains("not offered", refused.ParametersJson);
        Assert.Equal("agent-ref-0", refused.Host);
        Assert.Equal("firing,remediation", AlertsHarness.Kinds(await a.TransitionsAsync("nginx-reload")));
    }
}
