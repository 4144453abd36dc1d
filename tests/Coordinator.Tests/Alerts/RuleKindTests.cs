using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Logs;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;

namespace Fleet.Coordinator.Tests.Alerts;

/// <summary>The rule kinds besides thresholds, each on real storage with the fake clock.</summary>
public sealed class RuleKindTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task PredictedExhaustion_FiresForARisingDisk_NotForAFlatOne()
    {
        await using var h = new AlertsHarness(Store.Postgres, postgres.ConnectionString);
        await h.RuleAsync("""
            name: disk-predict
            kind: predict
            severity: warning
            predict: disk.used_ratio reaches 1.0 within 24h
            window: 6h
            """);
        var agent = await h.AgentAsync("agent-predict", "db-1");
        // Three hours of samples every 5 minutes: /data rises 0.50 -> 0.80 (full in about 2 h), / stays at 0.30.
        var start = h.Now.AddHours(-3);
        var samples = Enumerable.Range(0, 37).SelectMany(i => new[]
        {
            AlertsHarness.Sample("disk.used_ratio", 0.5 + 0.3 * i / 36.0, start.AddMinutes(5 * i), ("mount", "/data")),
            AlertsHarness.Sample("disk.used_ratio", 0.3, start.AddMinutes(5 * i), ("mount", "/")),
        }).ToArray();
        await h.SendAsync(agent, AlertsHarness.Metrics(samples));

        h.Time.Advance(TimeSpan.FromMinutes(5)); // predict rules run at most every PredictInterval (5m); the start-up tick may have just run it
        await h.Engine.TickAsync(default);
        var alert = Assert.Single(await h.AlertsAsync("disk-predict"));
        Assert.Equal(AlertStates.Firing, alert.State);
        Assert.Equal("/data", AlertLabels.Parse(alert.LabelsJson)["mount"]);
        Assert.InRange(alert.Value, 1.8, 2.2); // hours until full
        Assert.Equal("firing", AlertsHarness.Kinds(await h.TransitionsAsync("disk-predict")));
    }

    [Fact]
    public void LinearTrend_HoursUntil_IsTheLeastSquaresCrossing()
    {
        Assert.Equal(2.0, AlertEngine.HoursUntil([(-2, 0.6), (-1, 0.7), (0, 0.8)], 1.0)!.Value, 6);
        Assert.Null(AlertEngine.HoursUntil([(-2, 0.8), (-1, 0.7), (0, 0.6)], 1.0));
        Assert.Equal(0, AlertEngine.HoursUntil([(-1, 1.0), (0, 1.0)], 1.0));
    }

    static ProbeResult Probe(bool ok, DateTime at) => new()
    {
        Name = "app", Kind = "http", Target = "http://127.0.0.1/health", Ok = ok, Reason = ok ? "" : "HTTP 503",
        TimeUnixMs = new DateTimeOffset(at).ToUnixTimeMilliseconds(),
    };

    [Fact]
    public async Task Probe_FiresAfterNConsecutiveFailures_AndResolvesOnSuccess()
    {
        await using var h = new AlertsHarness(Store.Postgres, postgres.ConnectionString);
        await h.RuleAsync("""
            name: probe-failing
            kind: probe
            severity: critical
            probe: app
            failures: 3
            """);
        var agent = await h.AgentAsync("agent-probe", "app-1");
        async Task SendProbe(bool ok)
        {
            h.Time.Advance(TimeSpan.FromSeconds(30));
            await h.SendAsync(agent, new Batch { Metrics = new MetricBatch { Probes = { Probe(ok, h.Now) } } });
        }
        await SendProbe(false);
        await SendProbe(true);
        await SendProbe(false);
        await SendProbe(false);
        await SendProbe(true); // sentinel: evaluated in order, so once this is seen the earlier ones were too
        await SendProbe(false);
        await SendProbe(false);
        Assert.Empty(await h.TransitionsAsync("probe-failing"));
        await SendProbe(false);
        var alert = Assert.Single(await h.WaitAsync("probe-failing", a => a.Count == 1 && a[0].State == AlertStates.Firing, "firing after 3 failures"));
        Assert.Equal(3, alert.Value);
        Assert.Equal("app", AlertLabels.Parse(alert.LabelsJson)["probe"]);
        Assert.Equal("HTTP 503", AlertLabels.Parse(alert.AnnotationsJson)["reason"]);
        await SendProbe(true);
        await h.WaitAsync("probe-failing", a => a[0].State == AlertStates.Resolved, "resolved");
        Assert.Equal("firing,resolved", AlertsHarness.Kinds(await h.TransitionsAsync("probe-failing")));
    }

    [Fact]
    public async Task AgentOffline_FiresAfterNMinutes_AndResolvesWhenItReconnects()
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        await h.RuleAsync("""
            name: offline
            kind: offline
            severity: critical
            for: 5m
            """);
        var stream = RawAgentStream.Open(h.Coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello("agent-gone", "web-9"));
        await stream.CompleteAsync();
        await stream.FinalStatusAsync();
        await stream.DisposeAsync();
        await Eventually.UntilAsync(async () =>
        {
            await using var db = h.Db();
            return db.Set<Fleet.Coordinator.Audit.AuditRecord>().Any(a => a.Action == "agent.disconnected" && a.Host == "agent-gone");
        }, "the disconnect to be recorded");

        h.Time.Advance(TimeSpan.FromMinutes(4));
        await h.Engine.TickAsync(default);
        Assert.Empty(await h.AlertsAsync("offline"));
        h.Time.Advance(TimeSpan.FromMinutes(2));
        await h.Engine.TickAsync(default);
        var alert = Assert.Single(await h.AlertsAsync("offline"));
        Assert.Equal(AlertStates.Firing, alert.State);
        Assert.Equal("web-9", AlertLabels.Parse(alert.LabelsJson)["host"]);

        await h.AgentAsync("agent-gone", "web-9");
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Resolved, Assert.Single(await h.AlertsAsync("offline")).State);
    }

    [Theory]
    [InlineData(Store.Sqlite)]
    [InlineData(Store.Postgres)]
    public async Task RunFailed_Fires_AndResolvesWhenALaterRunSucceeds(Store store)
    {
        await using var h = new AlertsHarness(store, postgres.ConnectionString);
        var rule = "run-failed-" + store.ToString().ToLowerInvariant();
        await h.RuleAsync($"""
            name: {rule}
            kind: run_failed
            severity: warning
            task: apt.upgrade
            """);
        var agentId = "agent-run-" + store.ToString().ToLowerInvariant();
        async Task AddRunAsync(InvocationState state)
        {
            await using var db = h.Db();
            var runId = RunIds.New(h.Time.GetUtcNow());
            db.Runs.Add(new RunRecord { Id = runId, Task = "apt.upgrade", CreatedBy = "alice", CreatedAt = h.Now, Status = RunStatus.Failed, FinishedAt = h.Now });
            db.Invocations.Add(new InvocationRecord
            {
                Id = runId + "." + agentId, RunId = runId, AgentId = agentId, Hostname = "web-5", State = state, CreatedAt = h.Now,
                UpdatedAt = h.Now, FinishedAt = h.Now, ExitCode = state == InvocationState.Failed ? 100 : 0, Error = state == InvocationState.Failed ? "dpkg lock" : "",
            });
            await db.SaveChangesAsync();
        }
        await AddRunAsync(InvocationState.Failed);
        await h.Engine.TickAsync(default);
        var alert = Assert.Single(await h.AlertsAsync(rule));
        Assert.Equal(AlertStates.Firing, alert.State);
        var labels = AlertLabels.Parse(alert.LabelsJson);
        Assert.Equal(("apt.upgrade", "web-5"), (labels["task"], labels["host"]));
        Assert.Equal("dpkg lock", AlertLabels.Parse(alert.AnnotationsJson)["error"]);

        h.Time.Advance(TimeSpan.FromMinutes(10));
        await AddRunAsync(InvocationState.Succeeded);
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Resolved, Assert.Single(await h.AlertsAsync(rule)).State);
    }

    [Theory]
    [InlineData(Store.Sqlite)]
    [InlineData(Store.Postgres)]
    public async Task LogRate_PerFieldValue_UsesTheFieldAsALabel(Store store)
    {
        await using var h = new AlertsHarness(store, postgres.ConnectionString);
        var rule = "ssh-" + store.ToString().ToLowerInvariant();
        await h.RuleAsync($$$"""
            name: {{{rule}}}
            kind: log_rate
            severity: warning
            query: '"Failed password"'
            by: fields.src_ip
            more_than: 3
            within: 5m
            summary: "{{value}} failed logins from {{src_ip}} on {{host}}"
            """);
        var errors = "errors-" + store.ToString().ToLowerInvariant();
        await h.RuleAsync($"""
            name: {errors}
            kind: log_rate
            severity: warning
            log_severity: error
            more_than: 2
            within: 5m
            """);
        var agentId = "agent-logs-" + store.ToString().ToLowerInvariant();
        await using (var db = h.Db())
        {
            var offset = 0L;
            void Add(string message, short severity, string? ip, DateTime at) => db.Set<LogEntryRecord>().Add(new LogEntryRecord
            {
                AgentId = agentId, Source = "auth", Path = "/var/log/auth.log", FileId = "1:2:abc", Offset = offset++, Time = at, Severity = severity,
                Message = message, FieldsJson = ip is null ? "{}" : $$"""{"src_ip":"{{ip}}"}""", ReceivedAt = at,
            });
            for (var i = 0; i < 5; i++) Add($"Failed password for root from 10.0.0.1 port {4000 + i} ssh2", LogSeverity.Info, "10.0.0.1", h.Now.AddMinutes(-1));
            for (var i = 0; i < 2; i++) Add("Failed password for bob from 10.0.0.2 port 22 ssh2", LogSeverity.Info, "10.0.0.2", h.Now.AddMinutes(-1));
            for (var i = 0; i < 9; i++) Add("Failed password for eve from 10.0.0.3 port 22 ssh2", LogSeverity.Info, "10.0.0.3", h.Now.AddMinutes(-20)); // too old
            for (var i = 0; i < 3; i++) Add("disk write error", LogSeverity.Error, null, h.Now.AddMinutes(-2));
            Add("Accepted password for alice from 10.0.0.1", LogSeverity.Info, "10.0.0.1", h.Now.AddMinutes(-1));
            await db.SaveChangesAsync();
        }
        await h.Engine.TickAsync(default);
        var alert = Assert.Single(await h.AlertsAsync(rule));
        Assert.Equal(AlertStates.Firing, alert.State);
        Assert.Equal(5, alert.Value);
        Assert.Equal("10.0.0.1", AlertLabels.Parse(alert.LabelsJson)["src_ip"]);
        Assert.Equal($"5 failed logins from 10.0.0.1 on {agentId}", AlertLabels.Parse(alert.AnnotationsJson)["summary"]);
        var errorAlert = Assert.Single(await h.AlertsAsync(errors));
        Assert.Equal(3, errorAlert.Value);

        h.Time.Advance(TimeSpan.FromMinutes(5));
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Resolved, Assert.Single(await h.AlertsAsync(rule)).State);
    }

    [Fact]
    public async Task OutboxDropped_FiresWhenTheAgentReportsTheEvent()
    {
        await using var h = new AlertsHarness(Store.Postgres, postgres.ConnectionString);
        await h.RuleAsync("""
            name: outbox
            kind: outbox_dropped
            severity: critical
            within: 15m
            """);
        var agent = await h.AgentAsync("agent-outbox", "edge-1");
        await h.SendAsync(agent, new Batch
        {
            Events = new AgentEvents { Events = { new AgentEvent { Kind = "outbox.dropped", Message = "outbox full: dropped 120 records", Time = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTime(h.Now) } } },
        });
        var alert = Assert.Single(await h.WaitAsync("outbox", a => a.Count == 1 && a[0].State == AlertStates.Firing, "firing on the event (no timer wait)"));
        Assert.Equal("edge-1", AlertLabels.Parse(alert.LabelsJson)["host"]);
        h.Time.Advance(TimeSpan.FromMinutes(16));
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Resolved, Assert.Single(await h.AlertsAsync("outbox")).State);
    }

    [Fact]
    public async Task Watchdog_AlwaysFires_Once()
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        await h.RuleAsync("""
            name: watchdog
            kind: watchdog
            severity: info
            """);
        await h.Engine.TickAsync(default);
        h.Time.Advance(TimeSpan.FromHours(1));
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Firing, Assert.Single(await h.AlertsAsync("watchdog")).State);
        Assert.Equal("firing", AlertsHarness.Kinds(await h.TransitionsAsync("watchdog")));
    }
}
