using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Coordinator.Tests.Alerts;

public sealed class AckSilenceValidationTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task Acknowledge_IsAudited_RecordedAsATransition_AndOnlyOncePerEpisode()
    {
        await using var h = new AlertsHarness(Store.Postgres, postgres.ConnectionString);
        await h.RuleAsync("""
            name: watchdog-ack
            kind: watchdog
            severity: info
            """);
        await h.Engine.TickAsync(default);
        var listed = await h.Alerts().ListAlertsAsync(new ListAlertsRequest { State = "firing", Rule = "watchdog-ack" });
        var alert = Assert.Single(listed.Alerts);

        var acked = await h.Alerts("carol").AcknowledgeAlertAsync(new AcknowledgeAlertRequest { Id = alert.Id, Comment = "known, looking" });
        Assert.Equal("carol", acked.AcknowledgedBy);
        Assert.Equal("known, looking", acked.AckComment);
        Assert.Equal("firing,acknowledged", string.Join(",", acked.Transitions.Select(t => t.Kind)));
        await using (var db = h.Db())
        {
            var audit = await db.Set<AuditRecord>().AsNoTracking().SingleAsync(r => r.Action == "alert.acknowledged");
            Assert.Equal("carol", audit.Actor);
            Assert.Equal($"alert:{alert.Id}", audit.Target);
            Assert.Contains("known, looking", audit.ParametersJson);
        }
        var again = await Assert.ThrowsAsync<RpcException>(() => h.Alerts().AcknowledgeAlertAsync(new AcknowledgeAlertRequest { Id = alert.Id }).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, again.StatusCode);
        Assert.Contains("already acknowledged by carol", again.Status.Detail);
        var missing = await Assert.ThrowsAsync<RpcException>(() => h.Alerts().AcknowledgeAlertAsync(new AcknowledgeAlertRequest { Id = 424242 }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);

        var history = await h.Alerts().ListAlertHistoryAsync(new ListAlertHistoryRequest { AlertId = alert.Id });
        Assert.Equal(["acknowledged", "firing"], history.Transitions.Select(t => t.Kind));
    }

    [Fact]
    public async Task Silence_MatchesLabels_UntilItEnds_OrIsExpired_AndIsAudited()
    {
        await using var h = new AlertsHarness(Store.Postgres, postgres.ConnectionString);
        var silences = h.Coordinator.Services.GetRequiredService<ISilences>();
        var web1 = new Dictionary<string, string> { ["host"] = "web-1", ["alertname"] = "disk-usage", ["mount"] = "/var" };
        var web2 = new Dictionary<string, string> { ["host"] = "web-2", ["alertname"] = "disk-usage", ["mount"] = "/var" };

        var created = await h.Silences("dave").CreateSilenceAsync(new CreateSilenceRequest
        {
            Matchers = { "host=web-1", "alertname=~disk.*", "mount!=/boot" }, Duration = "2h", Comment = "replacing the disk",
        });
        Assert.Equal("active", created.State);
        Assert.Equal("dave", created.CreatedBy);
        Assert.True(await silences.IsSilencedAsync(web1, h.Now));
        Assert.False(await silences.IsSilencedAsync(web2, h.Now));
        Assert.False(await silences.IsSilencedAsync(new Dictionary<string, string>(web1) { ["mount"] = "/boot" }, h.Now));
        Assert.False(await silences.IsSilencedAsync(web1, h.Now.AddHours(2)));

        var expired = await h.Silences().ExpireSilenceAsync(new ExpireSilenceRequest { Id = created.Id });
        Assert.Equal("expired", expired.State);
        Assert.False(await silences.IsSilencedAsync(web1, h.Now));
        Assert.DoesNotContain((await h.Silences().ListSilencesAsync(new ListSilencesRequest())).Silences, s => s.Id == created.Id);
        Assert.Single((await h.Silences().ListSilencesAsync(new ListSilencesRequest { IncludeExpired = true })).Silences, s => s.Id == created.Id);
        await using var db = h.Db();
        Assert.Equal(["silence.created", "silence.expired"],
            await db.Set<AuditRecord>().AsNoTracking().Where(r => r.Target == "silence:" + created.Id).OrderBy(r => r.Id).Select(r => r.Action).ToListAsync());
    }

    [Theory]
    [InlineData("matchers", "host~web", "host~web")]
    [InlineData("matchers", "host=~(", "host=~(")]
    [InlineData("duration", "", "soon")]
    public async Task Silence_BadInput_IsInvalidArgumentNamingTheField(string field, string matcher, string value)
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        var request = new CreateSilenceRequest { Matchers = { matcher.Length > 0 ? matcher : "host=web-1" }, Duration = field == "duration" ? value : "1h", Comment = "x" };
        var ex = await Assert.ThrowsAsync<RpcException>(() => h.Silences().CreateSilenceAsync(request).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith(field + ":", ex.Status.Detail);
        Assert.Contains($"'{value}'", ex.Status.Detail);
    }

    const string Valid = """
        name: ok
        kind: threshold
        severity: warning
        expr: disk.used_ratio > 0.8
        for: 5m
        """;

    [Theory]
    [InlineData("expr: disk.used_ratio > 0.8", "expr: disk.used_ratio >> 0.8", "expr", "disk.used_ratio >> 0.8")]
    [InlineData("expr: disk.used_ratio > 0.8", "expr: disk used > 0.8", "expr", "disk used > 0.8")]
    [InlineData("expr: disk.used_ratio > 0.8", "expr: disk.used_ratio > lots", "expr", "disk.used_ratio > lots")]
    [InlineData("for: 5m", "for: 5 minutes", "for", "5 minutes")]
    [InlineData("severity: warning", "severity: urgent", "severity", "urgent")]
    [InlineData("kind: threshold", "kind: magic", "kind", "magic")]
    [InlineData("name: ok", "name: Not OK", "name", "Not OK")]
    [InlineData("for: 5m", "for: 5m\nclear: 0.9", "clear", "0.9")]
    [InlineData("for: 5m", "for: 5m\nbogus: 1", "unknown field", "bogus")]
    public async Task Rule_Validation_IsInvalidArgumentNamingTheFieldAndValue(string replace, string with, string field, string value)
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        var yaml = Valid.Replace(replace, with);
        var create = await Assert.ThrowsAsync<RpcException>(() => h.Rules().CreateRuleAsync(new CreateRuleRequest { Yaml = yaml }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, create.StatusCode);
        Assert.Contains(field, create.Status.Detail);
        Assert.Contains($"'{value}'", create.Status.Detail);
        var validate = await Assert.ThrowsAsync<RpcException>(() => h.Rules().ValidateRuleAsync(new CreateRuleRequest { Yaml = yaml }).ResponseAsync);
        Assert.Equal(create.Status.Detail, validate.Status.Detail);
        Assert.Empty((await h.Rules().ListRulesAsync(new ListRulesRequest())).Rules);
    }

    [Fact]
    public async Task Rule_Crud_ThroughTheApi_IsAudited_AndDeleteResolvesItsAlerts()
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        var rule = new Rule { Name = "wd", Kind = "watchdog", Severity = "info", Summary = "pipeline alive" };
        var created = await h.Rules().CreateRuleAsync(new CreateRuleRequest { Rule = rule });
        Assert.True(created.Id > 0);
        var exists = await Assert.ThrowsAsync<RpcException>(() => h.Rules().CreateRuleAsync(new CreateRuleRequest { Rule = rule }).ResponseAsync);
        Assert.Equal(StatusCode.AlreadyExists, exists.StatusCode);
        rule.Severity = "warning";
        Assert.Equal("warning", (await h.Rules().CreateRuleAsync(new CreateRuleRequest { Rule = rule, Replace = true })).Severity);
        Assert.Equal("warning", (await h.Rules().GetRuleAsync(new GetRuleRequest { Name = "wd" })).Severity);
        await h.Engine.TickAsync(default);
        Assert.Equal(AlertStates.Firing, Assert.Single(await h.AlertsAsync("wd")).State);

        var deleted = await h.Rules().DeleteRuleAsync(new DeleteRuleRequest { Name = "wd" });
        Assert.Equal(1, deleted.AlertsResolved);
        Assert.Equal("firing,resolved", AlertsHarness.Kinds(await h.TransitionsAsync("wd")));
        var gone = await Assert.ThrowsAsync<RpcException>(() => h.Rules().GetRuleAsync(new GetRuleRequest { Name = "wd" }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
        await using var db = h.Db();
        Assert.Equal(["rule.created", "rule.updated", "rule.deleted"],
            await db.Set<AuditRecord>().AsNoTracking().Where(r => r.Target == "rule:wd").OrderBy(r => r.Id).Select(r => r.Action).ToListAsync());
    }

    [Fact]
    public async Task DefaultRules_LoadOnFirstStart_AndOperatorEditsStick()
    {
        var db = new PostgresDatabase();
        await db.InitializeAsync();
        try
        {
            string[] names;
            await using (var first = new AlertsHarness(Store.Postgres, db.ConnectionString, defaultRules: true))
            {
                var rules = await Eventually.UntilAsync(async () => (await first.Rules().ListRulesAsync(new ListRulesRequest())).Rules, r => r.Count >= 14, "the default rules");
                names = rules.Select(r => r.Name).ToArray();
                Assert.Contains("disk-usage", names);
                Assert.Contains("watchdog", names);
                Assert.All(rules, r => Assert.True(r.DefaultRule));
                var disk = rules.Single(r => r.Name == "disk-usage");
                Assert.Equal(("disk.used_ratio > 0.80", "5m", 0.75), (disk.Expr, disk.For, disk.Clear));
                await first.Rules().DeleteRuleAsync(new DeleteRuleRequest { Name = "load-high" });
            }
            await using var second = new AlertsHarness(Store.Postgres, db.ConnectionString, defaultRules: true);
            await second.Engine.TickAsync(default);
            var after = (await second.Rules().ListRulesAsync(new ListRulesRequest())).Rules.Select(r => r.Name).ToArray();
            Assert.Equal(names.Where(n => n != "load-high").Order(), after.Order());
        }
        finally
        {
            await db.DisposeAsync();
        }
    }
}
