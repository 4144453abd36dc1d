using System.Text.Json;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;

namespace Fleet.Cli.Tests.Runs;

/// <summary>fleetctl run: what is sent, preview, following a run with --wait, and the start's own retry.</summary>
public sealed class RunCommandTests : IAsyncLifetime
{
    private FakeRunsCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync() => _coordinator = await FakeRunsCoordinator.StartAsync();

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    private CreateRunRequest Created() => Assert.Single(_coordinator.Service.Received<CreateRunRequest>());

    [Fact]
    public async Task Targets_split_into_tag_selectors_and_hosts_and_rate_values_pass_through_as_typed()
    {
        var run = await Run("run", "health.check", "--target", "role=web", "--target", "web-03", "--target", "env=prod", "--host", "a-db1",
            "--max-concurrency", "10%", "--max-errors", "5%", "--canary", "2", "--delivery-timeout", "10m", "--execution-timeout", "5m",
            "--param", "url=http://localhost/health?a=1&b=2", "--param", "empty=", "--dry-run", "--yes");

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = Created();
        Assert.Equal("health.check", request.Task);
        Assert.Equal(["role=web", "env=prod"], request.Tags);
        Assert.Equal(["web-03", "a-db1"], request.Hosts);
        Assert.Equal("10%", request.MaxConcurrency);
        Assert.Equal("5%", request.MaxErrors);
        Assert.Equal(2u, request.Canary);
        Assert.Equal("10m", request.DeliveryTimeout);
        Assert.Equal("5m", request.ExecutionTimeout);
        Assert.Equal("http://localhost/health?a=1&b=2", request.Parameters["url"]);
        Assert.Equal("", request.Parameters["empty"]);
        Assert.True(request.DryRun);
        Assert.True(request.Confirm);
        Assert.True(Guid.TryParse(request.ClientToken, out _), request.ClientToken);
    }

    [Fact]
    public async Task Without_wait_prints_the_run_id_and_how_to_follow_it()
    {
        var run = await Run("run", "health.check", "--target", "role=web", "--host", "web-01");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(["Started run r-1: health.check on 1 host.", "Follow it with: fleetctl runs show r-1"], run.StdoutLines);
        Assert.False(Created().Confirm);
        Assert.Empty(_coordinator.Service.Received<GetRunRequest>());
    }

    [Fact]
    public async Task Each_invocation_sends_a_new_client_token_unless_one_is_given()
    {
        await Run("run", "health.check", "--host", "web-01");
        await Run("run", "health.check", "--host", "web-01");
        await Run("run", "health.check", "--host", "web-01", "--client-token", "deploy-42");
        await Run("run", "health.check", "--host", "web-01", "--client-token", "deploy-42");

        var tokens = _coordinator.Service.Received<CreateRunRequest>().Select(r => r.ClientToken).ToList();
        Assert.Equal(4, tokens.Count);
        Assert.NotEqual(tokens[0], tokens[1]);
        Assert.Equal(["deploy-42", "deploy-42"], tokens[2..]);
        Assert.Equal(3, _coordinator.Service.Runs.Count);
    }

    [Fact]
    public async Task A_lost_answer_is_retried_with_the_same_client_token_and_creates_one_run()
    {
        _coordinator.Service.LoseAnswers = 1;

        // The retry pauses on the CLI's clock; move it on until the command is done.
        var command = Run("run", "health.check", "--host", "web-01", "--host", "web-02");
        await Eventually.UntilAsync(() =>
        {
            _cli.Time.Advance(TimeSpan.FromSeconds(1));
            return command.IsCompleted;
        }, "fleetctl run to finish after its retry");
        var run = await command;

        Assert.True(run.ExitCode == 0, run.ToString());
        var tokens = _coordinator.Service.Received<CreateRunRequest>().Select(r => r.ClientToken).ToList();
        Assert.Equal(2, tokens.Count);
        Assert.Equal(tokens[0], tokens[1]);
        Assert.Single(_coordinator.Service.Runs);
        Assert.Equal("Started run r-1: health.check on 2 hosts.", run.StdoutLines[0]);
    }

    [Fact]
    public async Task Preview_prints_the_resolved_hosts_and_creates_nothing()
    {
        _coordinator.Service.Preview = new PreviewRunResponse
        {
            Task = "restart-service", Destructive = true,
            Hosts =
            {
                new PreviewHost { AgentId = "a-web2", Hostname = "web-02", Online = true },
                new PreviewHost { AgentId = "a-db1", Hostname = "db-01", Online = false },
                new PreviewHost { AgentId = "a-web1", Hostname = "web-01", Online = true, Canary = true },
            },
        };

        var run = await Run("run", "restart-service", "--target", "env=prod", "--canary", "1", "--param", "unit=nginx", "--preview");

        Assert.True(run.ExitCode == 0, run.ToString());
        var rows = Table(run.StdoutLines[..4]);
        Assert.Equal(["HOST", "HOSTNAME", "ONLINE", "CANARY"], run.StdoutLines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["a-web1", "web-01", "yes", "yes"], rows[0]);
        Assert.Equal(["a-db1", "db-01", "no", "-"], rows[1]);
        Assert.Equal(["a-web2", "web-02", "yes", "-"], rows[2]);
        Assert.Equal("restart-service would run on 3 hosts (1 offline, 1 canary first); nothing was started.", run.StdoutLines[4]);
        Assert.Equal("restart-service is destructive: add --yes to run it.", run.StdoutLines[5]);
        var preview = Assert.Single(_coordinator.Service.Received<CreateRunRequest>());
        Assert.Equal(["env=prod"], preview.Tags);
        Assert.Equal("PreviewRun", Assert.Single(_coordinator.Service.Calls).Method);
        Assert.Empty(_coordinator.Service.Runs);
    }

    [Fact]
    public async Task Wait_exits_1_and_prints_the_summary_when_a_host_failed()
    {
        _coordinator.Service.WatchUpdates["r-1"] = RunsFleet.Progress("r-1", InvocationState.Failed);

        var run = await Run("run", "health.check", "--target", "role=web", "--wait");

        Assert.True(run.ExitCode == 1, run.ToString());
        var summary = run.StdoutLines.SkipWhile(l => !l.StartsWith("HOST ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(["HOST", "STATE", "EXIT", "DURATION", "SUMMARY"], summary[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Matches(@"^web-01\s+succeeded\s+0\s+2s\s+all 3 checks ok$", summary[1]);
        Assert.Matches(@"^web-02\s+failed\s+2\s+2s\s+http://localhost/health answered 503$", summary[2]);
        Assert.Equal("run r-1 failed: 1 of 2 hosts did not succeed", summary[3]);
    }

    [Fact]
    public async Task Wait_exits_0_when_every_host_succeeded()
    {
        _coordinator.Service.WatchUpdates["r-1"] = RunsFleet.Progress("r-1", InvocationState.Succeeded);

        var run = await Run("run", "health.check", "--target", "role=web", "--wait");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("run r-1 succeeded: 2 of 2 hosts succeeded", run.StdoutLines[^1]);
        Assert.Equal("", run.Stderr);
    }

    [Fact]
    public async Task Redirected_wait_output_is_one_plain_line_per_state_change()
    {
        _coordinator.Service.WatchUpdates["r-1"] = RunsFleet.Progress("r-1", InvocationState.Failed);

        var run = await Run("run", "health.check", "--target", "role=web", "--wait");

        Assert.DoesNotContain('\u001b', run.Stdout);
        Assert.DoesNotContain('\u001b', run.Stderr);
        var progress = run.StdoutLines.TakeWhile(l => !l.StartsWith("HOST ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(
        [
            "web-01 pending",
            "web-02 pending",
            "web-01 running",
            "web-02 running",
            "web-01 succeeded (exit 0): all 3 checks ok",
            "web-02 failed (exit 2): http://localhost/health answered 503",
        ], progress);
    }

    [Fact]
    public async Task Wait_json_prints_the_finished_run_only()
    {
        _coordinator.Service.WatchUpdates["r-1"] = RunsFleet.Progress("r-1", InvocationState.Succeeded);

        var run = await Run("run", "health.check", "--host", "web-01", "--wait", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var document = JsonDocument.Parse(run.Stdout);
        Assert.Equal("RUN_STATUS_SUCCEEDED", document.RootElement.GetProperty("status").GetString());
        Assert.Equal(2, document.RootElement.GetProperty("invocations").GetArrayLength());
    }

    [Fact]
    public async Task Ctrl_c_while_waiting_stops_watching_and_leaves_the_run_going()
    {
        _coordinator.Service.WatchUpdates["r-1"] = RunsFleet.Progress("r-1", InvocationState.Failed)[..2];
        _coordinator.Service.HoldWatchOpen = true;
        using var interrupt = new CancellationTokenSource();

        var command = _cli.RunAsync(["--coordinator", _coordinator.Url, "run", "health.check", "--target", "role=web", "--wait"], interrupt.Token);
        await _coordinator.Service.UpdatesSent.Task.DefaultTimeout();
        await interrupt.CancelAsync();
        var run = await command;

        Assert.Equal(130, run.ExitCode);
        Assert.Equal("run continues on the coordinator; fleetctl runs show r-1", Assert.Single(run.StderrLines));
        Assert.Empty(_coordinator.Service.Received<CancelRunRequest>());
    }

    [Fact]
    public async Task A_refusal_naming_a_field_is_one_error_line_with_exit_1()
    {
        _coordinator.Service.Reject = request => request.Task == "nope"
            ? new RpcException(new Status(StatusCode.InvalidArgument, "task: unknown task 'nope'"))
            : null;

        var run = await Run("run", "nope", "--target", "role=web");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.Equal("fleetctl: invalid argument: task: unknown task 'nope'", Assert.Single(run.StderrLines));
        Assert.Empty(_coordinator.Service.Runs);
    }

    private static List<string[]> Table(string[] lines) =>
        lines.Skip(1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
}
