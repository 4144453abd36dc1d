namespace Fleet.Cli.Tests.Runs;

/// <summary>Bad fleetctl run values are usage errors (exit 2) naming the option and the value; nothing reaches the coordinator.</summary>
public sealed class RunUsageTests : IAsyncLifetime
{
    private FakeRunsCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync() => _coordinator = await FakeRunsCoordinator.StartAsync();

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private async Task<CliRun> Refused(params string[] args)
    {
        var run = await _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Equal("", run.Stdout);
        Assert.Empty(_coordinator.Service.Calls);
        return run;
    }

    [Theory]
    [InlineData("unit")]
    [InlineData("=nginx")]
    [InlineData("")]
    public async Task A_malformed_param_names_the_option_and_the_value(string value)
    {
        var run = await Refused("run", "restart-service", "--host", "web-01", "--param", "ok=1", "--param", value);

        Assert.Equal($"fleetctl: invalid --param value '{value}': expected key=value, e.g. --param unit=nginx", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task A_param_given_twice_is_refused()
    {
        var run = await Refused("run", "restart-service", "--host", "web-01", "--param", "unit=a", "--param", "unit=b");

        Assert.Equal("fleetctl: invalid --param values: 'unit' is given more than once", Assert.Single(run.StderrLines));
    }

    [Theory]
    [InlineData("--max-concurrency", "0")]
    [InlineData("--max-concurrency", "ten")]
    [InlineData("--max-errors", "150%")]
    [InlineData("--max-errors", "x%")]
    [InlineData("--delivery-timeout", "soon")]
    [InlineData("--execution-timeout", "0s")]
    [InlineData("--canary", "two")]
    public async Task A_bad_rate_control_value_names_the_option_and_the_value(string option, string value)
    {
        var run = await Refused("run", "health.check", "--host", "web-01", option, value);

        Assert.StartsWith($"fleetctl: invalid {option} value '{value}': expected ", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task A_run_needs_a_target()
    {
        var run = await Refused("run", "health.check");

        Assert.Contains("fleetctl: fleetctl run needs at least one --target or --host", run.StderrLines);
    }

    [Fact]
    public async Task Preview_and_wait_do_not_go_together()
    {
        var run = await Refused("run", "health.check", "--host", "web-01", "--preview", "--wait");

        Assert.Contains("fleetctl: --preview and --wait cannot be used together", run.StderrLines);
    }
}
