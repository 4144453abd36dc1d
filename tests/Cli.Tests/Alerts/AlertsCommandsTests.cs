using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Tests.Alerts;

public sealed class AlertsCommandsTests : IAsyncLifetime
{
    private readonly CliRunner _cli = new();
    private FakeAlertsCoordinator _coordinator = null!;

    public async Task InitializeAsync()
    {
        _coordinator = await FakeAlertsCoordinator.StartAsync();
        _coordinator.Alerts.Current.Add(new Alert
        {
            Id = 7, RuleName = "disk-usage", State = "firing", Severity = "warning", Value = 0.91,
            FiringSince = Timestamp.FromDateTimeOffset(TestFleet.Now.AddMinutes(-3)),
            Labels = { ["host"] = "web-1", ["mount"] = "/var", ["alertname"] = "disk-usage", ["agent_id"] = "a-web1" },
            Annotations = { ["summary"] = "Disk /var on web-1 is 0.91 full" },
        });
        _coordinator.Alerts.Current.Add(new Alert { Id = 8, RuleName = "watchdog", State = "resolved", Severity = "info" });
    }

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    [Fact]
    public async Task Alerts_ListsFiringAlerts_AsATable_AndAsJsonLines()
    {
        var run = await Run("alerts", "--state", "firing");
        Assert.Equal(0, run.ExitCode);
        Assert.StartsWith("ID", run.StdoutLines[0]);
        var row = Assert.Single(run.StdoutLines[1..]);
        Assert.Contains("disk-usage", row);
        Assert.Contains("web-1", row);
        Assert.Contains("mount=/var", row);
        Assert.Contains("3m ago", row);
        Assert.Contains("Disk /var on web-1 is 0.91 full", row);
        var request = (ListAlertsRequest)Assert.Single(_coordinator.Alerts.Requests).Message;
        Assert.Equal("firing", request.State);

        var json = await Run("alerts", "--json");
        Assert.Equal(0, json.ExitCode);
        var line = Assert.Single(json.StdoutLines);
        Assert.Equal(7, Alert.Parser.ParseJson(line).Id);
    }

    [Fact]
    public async Task AlertsAck_SendsTheIdAndComment_AndReportsWhoAcknowledged()
    {
        var run = await Run("alerts", "ack", "7", "--comment", "on it");
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("alert 7 (disk-usage on web-1) acknowledged by test-operator", Assert.Single(run.StdoutLines));
        var request = (AcknowledgeAlertRequest)Assert.Single(_coordinator.Alerts.Requests).Message;
        Assert.Equal((7L, "on it"), (request.Id, request.Comment));

        var again = await Run("alerts", "ack", "7");
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("already acknowledged", again.Stderr);
    }

    [Fact]
    public async Task RulesCreate_SendsTheYamlFile_AndShowsTheServersValidationError()
    {
        using var dir = new TempDirectory();
        var good = dir.Combine("rule.yaml");
        await File.WriteAllTextAsync(good, "name: from-yaml\nkind: threshold\nseverity: warning\nexpr: disk.used_ratio > 0.9\n");
        var run = await Run("rules", "create", "-f", good, "--replace");
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("rule from-yaml saved (threshold, warning)", Assert.Single(run.StdoutLines));
        var request = (CreateRuleRequest)Assert.Single(_coordinator.Rules.Requests).Message;
        Assert.True(request.Replace);
        Assert.Equal(await File.ReadAllTextAsync(good), request.Yaml);

        var bad = dir.Combine("bad.yaml");
        await File.WriteAllTextAsync(bad, "name: x\nkind: threshold\nseverity: urgent\n");
        var invalid = await Run("rules", "create", "-f", bad);
        Assert.NotEqual(0, invalid.ExitCode);
        Assert.Contains("severity: 'urgent' is not one of critical, warning, info", invalid.Stderr);

        var list = await Run("rules", "list");
        Assert.Equal(0, list.ExitCode);
        Assert.Contains("from-yaml", list.Stdout);
        var delete = await Run("rules", "delete", "from-yaml");
        Assert.Equal("rule from-yaml deleted (2 open alerts resolved)", Assert.Single(delete.StdoutLines));
    }

    [Fact]
    public async Task SilenceAdd_SendsMatchersDurationAndComment_AndExpireEndsIt()
    {
        var run = await Run("silence", "add", "--matcher", "host=web-1", "--matcher", "alertname=~disk.*", "--for", "2h", "--comment", "disk swap");
        Assert.Equal(0, run.ExitCode);
        Assert.StartsWith("silence s-1 until 2025-03-14T17:09:26Z", Assert.Single(run.StdoutLines));
        var request = (CreateSilenceRequest)Assert.Single(_coordinator.Silences.Requests).Message;
        Assert.Equal(["host=web-1", "alertname=~disk.*"], request.Matchers);
        Assert.Equal(("2h", "disk swap"), (request.Duration, request.Comment));

        var expire = await Run("silence", "expire", "s-1");
        Assert.Equal(0, expire.ExitCode);
        Assert.Equal("silence s-1 expired", Assert.Single(expire.StdoutLines));
    }

    [Theory]
    [InlineData(new[] { "alerts", "--state", "burning" }, "--state", "'burning'")]
    [InlineData(new[] { "silence", "add", "--matcher", "host=web-1", "--for", "soon", "--comment", "x" }, "--for", "'soon'")]
    [InlineData(new[] { "silence", "add", "--for", "2h", "--comment", "x" }, "--matcher", "")]
    [InlineData(new[] { "rules", "create" }, "--file", "")]
    public async Task BadArguments_AreUsageErrors_NamingTheOption(string[] args, string option, string value)
    {
        var run = await _cli.RunAsync(["--coordinator", $"http://127.0.0.1:{FreePort.Next()}", .. args]);
        Assert.Equal(2, run.ExitCode);
        Assert.Contains(option, run.Stderr);
        Assert.Contains(value, run.Stderr);
        Assert.Empty(_coordinator.Alerts.Requests);
    }
}
