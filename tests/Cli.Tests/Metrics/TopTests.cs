using System.Collections.Concurrent;
using System.Text.Json;
using Fleet.Protocol.V1;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Cli.Tests.Metrics;

/// <summary>fleetctl top against a real loopback gRPC server.</summary>
public sealed class TopTests : IAsyncLifetime
{
    private FakeMetricsCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync()
    {
        _coordinator = await FakeMetricsCoordinator.StartAsync(TestFleet.Agents());
        _coordinator.Metrics.Latest = MetricsFleet.Latest();
    }

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    private async Task<Dictionary<string, Dictionary<string, string>>> TopRowsByHost()
    {
        var run = await Run("top");
        Assert.True(run.ExitCode == 0, run.ToString());
        return MetricsFleet.Rows(run.StdoutLines).ToDictionary(r => r["HOST"]);
    }

    [Fact]
    public async Task Top_prints_one_row_per_host_sorted_by_hostname()
    {
        var run = await Run("top");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        Assert.Equal(["HOST", "STATUS", "CPU", "MEM", "DISK", "LOAD", "PROBES"], run.StdoutLines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var rows = MetricsFleet.Rows(run.StdoutLines);
        // Case-insensitive hostname order, as in agents list.
        Assert.Equal(["cache-01", "db-01", "Web-01", "web-02"], rows.Select(r => r["HOST"]));
        Assert.Equal(
            new Dictionary<string, string>
            {
                ["HOST"] = "web-02", ["STATUS"] = "online", ["CPU"] = "42%", ["MEM"] = "94%!", ["DISK"] = "91%! /var",
                ["LOAD"] = "1.50", ["PROBES"] = "2 failing: app, db",
            },
            rows[3]);
    }

    [Fact]
    public async Task Top_cpu_is_the_total_not_a_busy_core()
    {
        var rows = await TopRowsByHost();

        // web-02's core 0 is at 97%, its total at 42%.
        Assert.Equal("42%", rows["web-02"]["CPU"]);
    }

    [Fact]
    public async Task Top_shows_no_data_for_a_stale_sample_and_a_dash_for_a_missing_one()
    {
        var rows = await TopRowsByHost();

        Assert.Equal("no data", rows["Web-01"]["CPU"]);
        Assert.Equal("50%", rows["Web-01"]["MEM"]);
        Assert.Equal("0.25", rows["Web-01"]["LOAD"]);
        Assert.Equal(["online", "-", "-", "-", "-", "-"], new[] { "STATUS", "CPU", "MEM", "DISK", "LOAD", "PROBES" }.Select(c => rows["cache-01"][c]));
    }

    [Fact]
    public async Task Top_shows_offline_hosts_without_their_last_values()
    {
        var rows = await TopRowsByHost();

        Assert.Equal(["offline", "-", "-", "-", "-", "-"], new[] { "STATUS", "CPU", "MEM", "DISK", "LOAD", "PROBES" }.Select(c => rows["db-01"][c]));
    }

    [Fact]
    public async Task Top_disk_is_the_fullest_fresh_mount_and_lists_stuck_mounts()
    {
        var rows = await TopRowsByHost();

        Assert.Equal("91%! /var", rows["web-02"]["DISK"]);
        // Web-01's /data (99%) is stale; / is the fullest mount it still reports.
        Assert.Equal("20% /, /mnt/nfs stuck!", rows["Web-01"]["DISK"]);
    }

    [Fact]
    public async Task Top_disk_is_no_data_when_every_mount_is_stale()
    {
        var latest = MetricsFleet.Latest();
        var host = latest.Hosts.Single(h => h.AgentId == "a-cache1");
        host.Samples.Add(MetricsFleet.Sample("disk.used_ratio", 0.5, stale: true, ("mount", "/")));
        _coordinator.Metrics.Latest = latest;

        var rows = await TopRowsByHost();

        Assert.Equal("no data", rows["cache-01"]["DISK"]);
    }

    [Fact]
    public async Task Top_lists_failing_probes_by_name_and_says_ok_when_all_pass()
    {
        var rows = await TopRowsByHost();

        Assert.Equal("2 failing: app, db", rows["web-02"]["PROBES"]);
        Assert.Equal("ok", rows["Web-01"]["PROBES"]);
    }

    [Fact]
    public async Task Top_marks_values_of_90_percent_or_more_so_a_scan_finds_them()
    {
        var run = await Run("top");

        Assert.True(run.ExitCode == 0, run.ToString());
        var marked = run.StdoutLines.Where(l => l.Contains('!', StringComparison.Ordinal)).Select(l => l.Split(' ')[0]).ToList();
        Assert.Equal(["Web-01", "web-02"], marked);
    }

    [Fact]
    public async Task Top_asks_only_for_the_metrics_its_table_shows()
    {
        var run = await Run("top");

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = Assert.Single(_coordinator.Metrics.LatestRequests);
        Assert.Equal(["cpu.usage", "memory.used_ratio", "disk.used_ratio", "disk.stuck", "load.1m"], request.Names);
    }

    [Fact]
    public async Task Top_json_prints_every_metric_of_every_host_sorted_by_hostname()
    {
        var run = await Run("top", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        Assert.Empty(Assert.Single(_coordinator.Metrics.LatestRequests).Names);
        var parsed = GetLatestMetricsResponse.Parser.ParseJson(run.Stdout);
        var expected = MetricsFleet.Latest().Hosts.OrderBy(h => h.Hostname, StringComparer.OrdinalIgnoreCase).ToList();
        Assert.Equal(expected, parsed.Hosts);
        // The REST API's field names, defaults included.
        using var document = JsonDocument.Parse(run.Stdout);
        var first = document.RootElement.GetProperty("hosts")[0];
        Assert.Equal("a-cache1", first.GetProperty("agentId").GetString());
        Assert.Equal(0, first.GetProperty("samples").GetArrayLength());
        Assert.Equal("AGENT_STATUS_ONLINE", first.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Top_without_hosts_says_so_on_stderr()
    {
        _coordinator.Metrics.Latest = new GetLatestMetricsResponse();

        var run = await Run("top");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stdout);
        Assert.Equal("No hosts.", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Top_watch_prints_each_refresh_separated_by_a_blank_line_waiting_the_interval_between()
    {
        var clock = new WaitingClock();
        clock.OnWait = wait =>
        {
            // web-02's memory drops before the second refresh.
            var latest = MetricsFleet.Latest();
            latest.Hosts.Single(h => h.AgentId == "a-web2").Samples.Single(s => s.Name == "memory.used_ratio").Value = 0.30;
            _coordinator.Metrics.Latest = latest;
            clock.AdvanceLater(wait);
        };

        var run = await RunAsync(clock, CancellationToken.None, "top", "--watch", "5s", "--watch-count", "2");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        Assert.DoesNotContain('\u001b', run.Stdout);
        var tables = run.Stdout.Split("\n\n");
        Assert.Equal(2, tables.Length);
        Assert.Equal("94%!", MetricsFleet.Rows(tables[0].Split('\n', StringSplitOptions.RemoveEmptyEntries)).Single(r => r["HOST"] == "web-02")["MEM"]);
        Assert.Equal("30%", MetricsFleet.Rows(tables[1].Split('\n', StringSplitOptions.RemoveEmptyEntries)).Single(r => r["HOST"] == "web-02")["MEM"]);
        Assert.Equal(2, _coordinator.Metrics.LatestRequests.Count);
        Assert.Equal([TimeSpan.FromSeconds(5)], clock.Waits);
    }

    [Fact]
    public async Task Top_watch_without_an_interval_refreshes_every_two_seconds()
    {
        var clock = new WaitingClock();
        clock.OnWait = clock.AdvanceLater;

        var run = await RunAsync(clock, CancellationToken.None, "top", "--watch", "--watch-count", "3");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(3, run.Stdout.Split("\n\n").Length);
        Assert.Equal([TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2)], clock.Waits);
    }

    [Fact]
    public async Task Top_watch_ends_cleanly_at_ctrl_c()
    {
        using var interrupt = new CancellationTokenSource();
        var clock = new WaitingClock();
        // Ctrl+C while fleetctl waits for the next refresh.
        clock.OnWait = _ => ThreadPool.QueueUserWorkItem(_ => interrupt.Cancel());

        var run = await RunAsync(clock, interrupt.Token, "top", "--watch", "2s");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        Assert.Equal(5, run.StdoutLines.Length);
        Assert.Single(_coordinator.Metrics.LatestRequests);
    }

    [Fact]
    public async Task Top_json_watch_prints_one_document_per_refresh()
    {
        var clock = new WaitingClock();
        clock.OnWait = clock.AdvanceLater;

        var run = await RunAsync(clock, CancellationToken.None, "top", "--json", "--watch", "1m", "--watch-count", "2");

        Assert.True(run.ExitCode == 0, run.ToString());
        var documents = run.Stdout.Split("\n\n");
        Assert.Equal(2, documents.Length);
        Assert.All(documents, d => Assert.Equal(4, GetLatestMetricsResponse.Parser.ParseJson(d).Hosts.Count));
    }

    private async Task<CliRun> RunAsync(WaitingClock clock, CancellationToken cancellationToken, params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var environment = new CliEnvironment(stdout, stderr)
        {
            GetEnvironmentVariable = _ => null,
            OsUserName = () => "test-operator",
            Time = clock,
        };
        var exitCode = await Cli.RunAsync(["--coordinator", _coordinator.Url, .. args], environment, cancellationToken).WaitAsync(TimeSpan.FromSeconds(60));
        return new CliRun(exitCode, stdout.ToString(), stderr.ToString());
    }

    /// <summary>
    /// A fake clock that tells the test when fleetctl starts waiting (creates a timer), so the test can move time
    /// or press Ctrl+C exactly then, instead of sleeping.
    /// </summary>
    private sealed class WaitingClock() : FakeTimeProvider(TestFleet.Now)
    {
        public ConcurrentQueue<TimeSpan> Waits { get; } = new();

        public Action<TimeSpan> OnWait { get; set; } = _ => { };

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = base.CreateTimer(callback, state, dueTime, period);
            Waits.Enqueue(dueTime);
            OnWait(dueTime);
            return timer;
        }

        /// <summary>Moves time forward off the caller's stack, so the timer fires after its creator has it in hand.</summary>
        public void AdvanceLater(TimeSpan by) => ThreadPool.QueueUserWorkItem(_ => Advance(by));
    }
}
