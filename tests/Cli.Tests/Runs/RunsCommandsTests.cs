using System.Security.Cryptography;
using System.Text.Json;
using Fleet.Protocol.V1;
using Fleet.Testing;

namespace Fleet.Cli.Tests.Runs;

/// <summary>fleetctl runs list|show|output|cancel|retry against the fake Runs service.</summary>
public sealed class RunsCommandsTests : IAsyncLifetime
{
    private FakeRunsCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync()
    {
        _coordinator = await FakeRunsCoordinator.StartAsync();
        var failed = RunsFleet.Progress("r-7", InvocationState.Failed)[^1];
        failed.Parameters["url"] = "http://localhost/health";
        failed.Parameters["token"] = "***";
        failed.StatusReason = "max errors (1) reached";
        failed.Invocations[1].FailureKind = "exit_code";
        failed.Invocations[1].OutputBytes = 300;
        _coordinator.Service.Runs["r-7"] = failed;
        var older = RunsFleet.Progress("r-6", InvocationState.Succeeded)[^1];
        older.Task = "disk-usage";
        older.CreatedAt = RunsFleet.At(TestFleet.Now.AddHours(-2));
        _coordinator.Service.Runs["r-6"] = older;
    }

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    [Fact]
    public async Task List_prints_a_table_with_host_counts_newest_first()
    {
        var run = await Run("runs", "list");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(3, run.StdoutLines.Length);
        Assert.Matches(@"^ID\s+TASK\s+STATUS\s+OK/FAILED/TOTAL\s+CREATED BY\s+CREATED AT$", run.StdoutLines[0]);
        Assert.Matches(@"^r-7\s+health\.check\s+failed\s+1/1/2\s+alice\s+2025-03-14T15:08:26Z$", run.StdoutLines[1]);
        Assert.Matches(@"^r-6\s+disk-usage\s+succeeded\s+2/0/2\s+alice\s+2025-03-14T13:09:26Z$", run.StdoutLines[2]);
    }

    [Fact]
    public async Task List_sends_its_filters_and_limit()
    {
        var run = await Run("runs", "list", "--task", "health.check", "--status", "failed", "--limit", "5");

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = Assert.Single(_coordinator.Service.Received<ListRunsRequest>());
        Assert.Equal("health.check", request.Task);
        Assert.Equal(RunStatus.Failed, request.Status);
        Assert.Equal(5, request.PageSize);
        Assert.Equal(2, run.StdoutLines.Length);
    }

    [Fact]
    public async Task List_json_is_the_rest_shape()
    {
        var run = await Run("runs", "list", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var document = JsonDocument.Parse(run.Stdout);
        var runs = document.RootElement.GetProperty("runs");
        Assert.Equal(["r-7", "r-6"], runs.EnumerateArray().Select(r => r.GetProperty("id").GetString()));
    }

    [Fact]
    public async Task Show_prints_the_header_the_hosts_and_the_errors_of_failed_hosts()
    {
        var run = await Run("runs", "show", "r-7");

        Assert.True(run.ExitCode == 0, run.ToString());
        var lines = run.StdoutLines;
        Assert.Contains("Status:            failed (max errors (1) reached)", lines);
        Assert.Contains("Parameters:        token=***, url=http://localhost/health", lines);
        Assert.Contains("Max concurrency:   10%", lines);
        Assert.Contains("Max errors:        1", lines);
        Assert.Contains("Canary:            1", lines);
        Assert.Contains(lines, l => l.StartsWith("HOST ", StringComparison.Ordinal));
        Assert.Contains(lines, l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^web-02\s+failed\s+2\s+2s\s+http://localhost/health answered 503$"));
        var errors = lines.SkipWhile(l => l != "Errors:").ToArray();
        Assert.Equal(
        [
            "Errors:",
            "  web-02 (failed, exit_code): http://localhost/health answered 503",
            "    output: fleetctl runs output r-7 web-02",
        ], errors);
    }

    [Fact]
    public async Task Show_of_an_unknown_run_is_not_found_with_exit_1()
    {
        var run = await Run("runs", "show", "r-404");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("fleetctl: not found: run 'r-404' does not exist", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Output_is_byte_identical_for_large_binary_content()
    {
        var content = new byte[300 * 1024];
        new Random(7).NextBytes(content);
        "line one\r\nline two\n\u00e9\0"u8.CopyTo(content);
        _coordinator.Service.Outputs[("r-7", "a-web2")] = content;

        var run = await Run("runs", "output", "r-7", "web-02");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        Assert.Equal(content.Length, run.StdoutBytes.Length);
        Assert.Equal(SHA256.HashData(content), SHA256.HashData(run.StdoutBytes));
        Assert.Equal("a-web2", Assert.Single(_coordinator.Service.Received<GetInvocationOutputRequest>()).AgentId);
    }

    [Fact]
    public async Task Output_of_a_host_without_output_writes_nothing_and_exits_1()
    {
        var run = await Run("runs", "output", "r-7", "a-web1");

        Assert.Equal(1, run.ExitCode);
        Assert.Empty(run.StdoutBytes);
        Assert.Equal("fleetctl: not found: no output for host 'a-web1' in run r-7", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Cancel_one_host_by_hostname_sends_its_id_and_the_reason()
    {
        var run = await Run("runs", "cancel", "r-7", "--host", "web-01", "--reason", "maintenance window over");

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = Assert.Single(_coordinator.Service.Received<CancelRunRequest>());
        Assert.Equal(("r-7", "a-web1", "maintenance window over"), (request.Id, request.AgentId, request.Reason));
        Assert.Equal("Cancelled the invocation on web-01 in run r-7; the run is failed.", Assert.Single(run.StdoutLines));
    }

    [Fact]
    public async Task Cancel_the_whole_run()
    {
        var run = await Run("runs", "cancel", "r-7");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", Assert.Single(_coordinator.Service.Received<CancelRunRequest>()).AgentId);
        Assert.Equal("Cancelled run r-7; the run is cancelled.", Assert.Single(run.StdoutLines));
    }

    [Fact]
    public async Task Retry_failed_starts_a_run_on_the_hosts_that_did_not_succeed()
    {
        var run = await Run("runs", "retry", "r-7", "--failed", "--yes");

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = Assert.Single(_coordinator.Service.Received<RetryRunRequest>());
        Assert.True(request.FailedOnly);
        Assert.True(request.Confirm);
        Assert.True(Guid.TryParse(request.ClientToken, out _));
        var retry = Assert.Single(_coordinator.Service.Runs.Values, r => r.RetryOf == "r-7");
        Assert.Equal(["a-web2"], retry.Hosts);
        Assert.Equal($"Started run {retry.Id}: health.check on 1 host.", run.StdoutLines[0]);
    }
}
