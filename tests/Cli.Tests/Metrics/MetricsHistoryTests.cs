using System.Text.Json;
using Fleet.Protocol.V1;

namespace Fleet.Cli.Tests.Metrics;

/// <summary>fleetctl metrics HOST NAME against a real loopback gRPC server.</summary>
public sealed class MetricsHistoryTests : IAsyncLifetime
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(30);

    private FakeMetricsCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync()
    {
        _coordinator = await FakeMetricsCoordinator.StartAsync(
        [
            .. TestFleet.Agents(),
            // Two agents share a hostname (a reinstalled machine that got a new ID).
            new Agent { Id = "a-api1", Hostname = "api-01", Status = AgentStatus.Online },
            new Agent { Id = "a-api1-old", Hostname = "API-01", Status = AgentStatus.Offline },
        ]);
        _coordinator.Metrics.History[("a-web2", "load.1m")] = [MetricsFleet.Series([0, 1, 2, 3, 4, 5, 6, 7], Step)];
    }

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    [Fact]
    public async Task Metrics_by_agent_id_prints_stats_and_a_sparkline_per_series()
    {
        var run = await Run("metrics", "a-web2", "load.1m");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        Assert.Equal(
            [
                "load.1m on web-02 (a-web2), last 1h in 30s steps",
                "(no labels)  min 0  avg 3.5  max 7  last 7  (8 points)",
                "▁▂▃▄▅▆▇█",
            ],
            run.StdoutLines);
    }

    [Fact]
    public async Task Metrics_by_hostname_queries_that_agents_id_ignoring_case()
    {
        var run = await Run("metrics", "WEB-02", "load.1m");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("a-web2", Assert.Single(_coordinator.Metrics.QueryRequests).AgentId);
        Assert.Equal("▁▂▃▄▅▆▇█", run.StdoutLines[^1]);
    }

    [Fact]
    public async Task Metrics_for_an_ambiguous_hostname_fails_naming_the_candidates()
    {
        var run = await Run("metrics", "api-01", "cpu.usage");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.Equal(
            "fleetctl: hostname 'api-01' matches 2 agents: a-api1 (api-01, online), a-api1-old (API-01, offline); pass the agent ID instead",
            Assert.Single(run.StderrLines));
        Assert.Empty(_coordinator.Metrics.QueryRequests);
    }

    [Fact]
    public async Task Metrics_for_an_unknown_host_is_not_found()
    {
        var run = await Run("metrics", "nosuch", "cpu.usage");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.Equal("fleetctl: not found: no agent has the ID or hostname 'nosuch'", Assert.Single(run.StderrLines));
        Assert.Empty(_coordinator.Metrics.QueryRequests);
    }

    [Fact]
    public async Task Metrics_asks_for_the_last_hour_in_30s_steps_by_default()
    {
        var run = await Run("metrics", "a-web2", "load.1m");

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = Assert.Single(_coordinator.Metrics.QueryRequests);
        Assert.Equal("a-web2", request.AgentId);
        Assert.Equal("load.1m", request.Name);
        Assert.Equal(MetricsFleet.At(TestFleet.Now.AddHours(-1)), request.From);
        Assert.Equal(MetricsFleet.At(TestFleet.Now), request.To);
        Assert.Equal(30, request.StepSeconds);
    }

    [Theory]
    [InlineData("5m", 10)]
    [InlineData("6h", 180)]
    [InlineData("24h", 720)]
    [InlineData("7d", 5040)]
    [InlineData("100m", 50)]
    [InlineData("1001m", 510)]
    [InlineData("1000d", 86_400)]
    public async Task Metrics_default_step_brings_back_at_most_about_120_points_in_10s_multiples(string since, int stepSeconds)
    {
        var run = await Run("metrics", "a-web2", "load.1m", "--since", since);

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = Assert.Single(_coordinator.Metrics.QueryRequests);
        Assert.True(AuditCommandsAge(since, out var window));
        Assert.Equal(MetricsFleet.At(TestFleet.Now - window), request.From);
        Assert.Equal(stepSeconds, request.StepSeconds);
    }

    [Fact]
    public async Task Metrics_sends_the_given_since_and_step()
    {
        var run = await Run("metrics", "a-web2", "load.1m", "--since", "2d", "--step", "5m");

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = Assert.Single(_coordinator.Metrics.QueryRequests);
        Assert.Equal(MetricsFleet.At(TestFleet.Now.AddDays(-2)), request.From);
        Assert.Equal(MetricsFleet.At(TestFleet.Now), request.To);
        Assert.Equal(300, request.StepSeconds);
        Assert.Equal("load.1m on web-02 (a-web2), last 2d in 5m steps", run.StdoutLines[0]);
    }

    [Fact]
    public async Task Metrics_table_prints_a_time_and_value_row_per_point()
    {
        _coordinator.Metrics.History[("a-web2", "disk.used_ratio")] =
            [MetricsFleet.Series([0.5, 0.515, 0.91], TimeSpan.FromMinutes(1), ("mount", "/var"))];

        var run = await Run("metrics", "a-web2", "disk.used_ratio", "--table");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(
            [
                "disk.used_ratio on web-02 (a-web2), last 1h in 30s steps",
                "mount=/var  min 50%  avg 64.2%  max 91%  last 91%  (3 points)",
                "TIME                  VALUE",
                "2025-03-14T15:07:26Z  50%",
                "2025-03-14T15:08:26Z  51.5%",
                "2025-03-14T15:09:26Z  91%",
            ],
            run.StdoutLines);
    }

    [Fact]
    public async Task Metrics_prints_series_in_label_order_with_numbers_in_numeric_order()
    {
        _coordinator.Metrics.History[("a-web2", "cpu.usage")] =
        [
            MetricsFleet.Series([0.1], Step, ("cpu", "10")),
            MetricsFleet.Series([0.2], Step, ("cpu", "2")),
            MetricsFleet.Series([0.3], Step),
            MetricsFleet.Series([], Step, ("cpu", "3")),
        ];

        var run = await Run("metrics", "a-web2", "cpu.usage");

        Assert.True(run.ExitCode == 0, run.ToString());
        var titles = run.StdoutLines.Where(l => l.Contains("  min ", StringComparison.Ordinal)).Select(l => l[..l.IndexOf("  min ", StringComparison.Ordinal)]);
        // The series without points has nothing to show.
        Assert.Equal(["(no labels)", "cpu=2", "cpu=10"], titles);
    }

    [Fact]
    public async Task Metrics_chart_is_at_most_60_columns_when_stdout_is_not_a_terminal()
    {
        _coordinator.Metrics.History[("a-web2", "load.1m")] = [MetricsFleet.Series(Enumerable.Range(0, 120).Select(i => (double)i), Step)];

        var run = await Run("metrics", "a-web2", "load.1m");

        Assert.True(run.ExitCode == 0, run.ToString());
        var chart = run.StdoutLines[^1];
        Assert.Equal(60, chart.Length);
        Assert.Equal('▁', chart[0]);
        Assert.Equal('█', chart[^1]);
        Assert.Contains("(120 points)", run.StdoutLines[^2]);
    }

    [Fact]
    public async Task Metrics_json_prints_the_response()
    {
        var run = await Run("metrics", "web-02", "load.1m", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        var parsed = QueryMetricsResponse.Parser.ParseJson(run.Stdout);
        Assert.Equal("a-web2", parsed.AgentId);
        Assert.Equal([0d, 1, 2, 3, 4, 5, 6, 7], Assert.Single(parsed.Series).Points.Select(p => p.Value));
        using var document = JsonDocument.Parse(run.Stdout);
        Assert.Equal("load.1m", document.RootElement.GetProperty("name").GetString());
    }

    [Fact]
    public async Task Metrics_without_samples_says_so_on_stderr()
    {
        var run = await Run("metrics", "a-web2", "memory.used_ratio", "--since", "15m");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stdout);
        Assert.Equal("No memory.used_ratio samples from web-02 (a-web2) in the last 15m.", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Metrics_without_samples_of_an_unknown_name_lists_the_names_agents_send()
    {
        var run = await Run("metrics", "a-web2", "cpu.usge");

        Assert.True(run.ExitCode == 0, run.ToString());
        var line = Assert.Single(run.StderrLines);
        Assert.StartsWith("No cpu.usge samples from web-02 (a-web2) in the last 1h. Agents send: cpu.usage, ", line);
    }

    private static bool AuditCommandsAge(string text, out TimeSpan value) => Fleet.Cli.DurationText.TryParseAge(text, out value);
}
