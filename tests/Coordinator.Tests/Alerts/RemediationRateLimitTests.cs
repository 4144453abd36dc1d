using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Coordinator.Tests.Alerts;

/// <summary>
/// <c>remediate.min_interval</c>: a flapping alert remediates at most once per interval on a host; the firings in
/// between get a recorded, audited "rate limited" refusal and no run, the same on every coordinator.
/// </summary>
public sealed class RemediationRateLimitTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    static TaskDescriptor ServiceRestart() => new()
    {
        Name = "service.restart",
        Description = "restarts a systemd unit",
        Parameters = { new ParameterSchema { Name = "service", Type = ParameterSchema.Types.Type.String, Required = true, Pattern = "[a-z0-9@._-]+" } },
    };

    static string Rule(string name, string? minInterval) => $"""
        name: {name}
        kind: threshold
        severity: critical
        expr: nginx.workers < 1
        remediate:
          task: service.restart
          parameters: {"{"} service: nginx {"}"}
        {(minInterval is null ? "" : $"  min_interval: {minInterval}")}
        """;

    /// <summary>The alert of <paramref name="rule"/> on the stream's host fires (a new episode each time it is called after a resolve).</summary>
    static async Task FireAsync(AlertsHarness h, RawAgentStream stream, string rule, long episode)
    {
        await SampleAsync(h, stream, 0);
        await h.WaitAsync(rule, x => x is [{ State: AlertStates.Firing }] && x[0].Episode == episode, $"episode {episode} firing");
    }

    static ulong counter;

    /// <summary>A sample from the host; the remediation's dispatch may come before the batch's ack (it is left unanswered).</summary>
    static async Task SampleAsync(AlertsHarness h, RawAgentStream stream, double value)
    {
        var batch = AlertsHarness.Metrics(AlertsHarness.Sample("nginx.workers", value, h.Now));
        batch.Key = new BatchKey { Epoch = 77, Counter = Interlocked.Increment(ref counter) };
        await stream.SendAsync(new AgentMessage { Batch = batch });
        CoordinatorMessage reply;
        do reply = await stream.ReceiveAsync();
        while (reply.BodyCase == CoordinatorMessage.BodyOneofCase.Dispatch);
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, reply.BodyCase);
    }

    static async Task ResolveAsync(AlertsHarness h, RawAgentStream stream, string rule)
    {
        await SampleAsync(h, stream, 4);
        await h.WaitAsync(rule, x => x is [{ State: AlertStates.Resolved }], "resolved");
    }

    static async Task<(List<RunRecordView> Runs, List<AuditRecord> Refused, List<AlertTransitionRecord> Outcomes)> OutcomesAsync(AlertsHarness h, string rule)
    {
        var transitions = await h.TransitionsAsync(rule);
        var tokens = transitions.Where(t => t.Kind == AlertTransitionKinds.Firing).Select(t => AlertRemediation.ClientToken(t.Id)).ToList();
        await using var db = h.Db();
        var runs = await db.Runs.AsNoTracking().Where(r => r.ClientToken != null && tokens.Contains(r.ClientToken))
            .OrderBy(r => r.CreatedAt).Select(r => new RunRecordView(r.Id, r.ClientToken!)).ToListAsync();
        var refused = (await db.Set<AuditRecord>().AsNoTracking().Where(r => r.Action == "alert.remediation_refused").ToListAsync())
            .Where(r => r.ParametersJson.Contains($"\"{rule}\"", StringComparison.Ordinal)).ToList();
        return (runs, refused, transitions.Where(t => t.Kind == AlertTransitionKinds.Remediation).ToList());
    }

    sealed record RunRecordView(string Id, string Token);

    [Fact]
    public async Task TwoFiringsWithinTheInterval_OneRun_AndOneRateLimitedOutcome_AgreedByTwoCoordinators()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(DateTime.UtcNow.Date.AddHours(12), TimeSpan.Zero));
        await using var a = new AlertsHarness(Store.Postgres, postgres.ConnectionString, time: time);
        await using var b = new AlertsHarness(Store.Postgres, postgres.ConnectionString, time: time);
        await a.RuleAsync(Rule("nginx-flapping", null)); // the default: 10 minutes
        await b.Engine.TickAsync(default);
        var stream = await a.AgentAsync("agent-flap", "web-flap", ServiceRestart());

        await FireAsync(a, stream, "nginx-flapping", 1);
        await Task.WhenAll(a.Remediation.RemediateOnceAsync(default), b.Remediation.RemediateOnceAsync(default));
        time.Advance(TimeSpan.FromMinutes(1));
        await ResolveAsync(a, stream, "nginx-flapping");
        time.Advance(TimeSpan.FromMinutes(3));
        await FireAsync(a, stream, "nginx-flapping", 2);
        await Task.WhenAll(a.Remediation.RemediateOnceAsync(default), b.Remediation.RemediateOnceAsync(default),
            a.Remediation.RemediateOnceAsync(default), b.Remediation.RemediateOnceAsync(default));

        var (runs, refused, outcomes) = await OutcomesAsync(a, "nginx-flapping");
        var firings = (await a.TransitionsAsync("nginx-flapping")).Where(t => t.Kind == AlertTransitionKinds.Firing).ToList();
        var run = Assert.Single(runs);
        Assert.Equal(AlertRemediation.ClientToken(firings[0].Id), run.Token);
        var limited = Assert.Single(refused);
        Assert.Contains("rate limited", limited.ParametersJson);
        Assert.Contains("min_interval is 10m", limited.ParametersJson);
        Assert.Contains(run.Id, limited.ParametersJson); // names the last remediation run
        Assert.Contains($"at {time.GetUtcNow().UtcDateTime.AddMinutes(-4):yyyy-MM-ddTHH:mm}", limited.ParametersJson); // and when it ran
        Assert.Equal("error: refused", limited.Outcome);
        Assert.Equal("agent-flap", limited.Host);
        Assert.Equal(2, outcomes.Count); // one outcome per firing
        Assert.Equal("firing,remediation,resolved,firing,remediation",
            AlertsHarness.Kinds((await a.TransitionsAsync("nginx-flapping")).Where(t => t.Kind != AlertTransitionKinds.Pending)));
        Assert.Contains("rate limited", AlertLabels.Parse(outcomes[1].AnnotationsJson)["error"]);
    }

    [Theory]
    [InlineData("5m", 6, 2)]  // a firing after the interval remediates again
    [InlineData("0", 1, 2)]   // 0: no limit, every firing remediates
    [InlineData("1h", 30, 1)] // within the interval: limited
    public async Task ASecondFiring_Remediates_OnlyOnceTheIntervalIsOver(string minInterval, int minutesLater, int expectedRuns)
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        var rule = "nginx-" + minInterval.Replace("0", "zero", StringComparison.Ordinal);
        await h.RuleAsync(Rule(rule, minInterval));
        var stream = await h.AgentAsync("agent-" + rule, "web-" + rule, ServiceRestart());
        await FireAsync(h, stream, rule, 1);
        await h.Remediation.RemediateOnceAsync(default);
        await ResolveAsync(h, stream, rule);
        h.Time.Advance(TimeSpan.FromMinutes(minutesLater));
        await FireAsync(h, stream, rule, 2);
        await h.Remediation.RemediateOnceAsync(default);
        await h.Remediation.RemediateOnceAsync(default);

        var (runs, refused, outcomes) = await OutcomesAsync(h, rule);
        Assert.Equal(expectedRuns, runs.Count);
        Assert.Equal(2 - expectedRuns, refused.Count);
        Assert.Equal(2, outcomes.Count);
    }

    [Fact]
    public async Task AFiringOnAnotherHost_IsNotLimitedByThisHostsRun()
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        await h.RuleAsync(Rule("nginx-hosts", "1h"));
        var one = await h.AgentAsync("agent-h1", "web-h1", ServiceRestart());
        var two = await h.AgentAsync("agent-h2", "web-h2", ServiceRestart());
        await h.SampleAsync(one, "nginx.workers", 0);
        await h.SampleAsync(two, "nginx.workers", 0);
        await h.WaitAsync("nginx-hosts", x => x.Count == 2 && x.All(y => y.State == AlertStates.Firing), "both firing");
        await h.Remediation.RemediateOnceAsync(default);

        var (runs, refused, _) = await OutcomesAsync(h, "nginx-hosts");
        Assert.Equal(2, runs.Count);
        Assert.Empty(refused);
    }

    [Theory]
    [InlineData("soon")]
    [InlineData("-5m")]
    [InlineData("90d")]
    public async Task ABadMinInterval_IsInvalidArgument_NamingTheFieldAndValue(string value)
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        var ex = await Assert.ThrowsAsync<RpcException>(() => h.RuleAsync(Rule("nginx-bad", value)));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains($"remediate.min_interval: '{value}'", ex.Status.Detail);
    }
}
