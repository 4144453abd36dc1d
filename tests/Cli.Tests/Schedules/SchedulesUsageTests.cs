namespace Fleet.Cli.Tests.Schedules;

/// <summary>Bad fleetctl schedules arguments are usage errors (exit 2) naming the option and the value; nothing reaches the coordinator.</summary>
public sealed class SchedulesUsageTests : IAsyncLifetime
{
    private FakeSchedulesCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync() => _coordinator = await FakeSchedulesCoordinator.StartAsync();

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
    [InlineData("0")]
    [InlineData("101")]
    [InlineData("ten")]
    public async Task A_bad_preview_count_names_the_option_and_the_value(string value)
    {
        var run = await Refused("schedules", "preview", "daily-health-checks", "--count", value);

        Assert.Equal($"fleetctl: invalid --count value '{value}': expected a whole number from 1 to 100", Assert.Single(run.StderrLines));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("501")]
    public async Task A_bad_history_limit_names_the_option_and_the_value(string value)
    {
        var run = await Refused("schedules", "history", "daily-health-checks", "--limit", value);

        Assert.Equal($"fleetctl: invalid --limit value '{value}': expected a whole number from 1 to 500", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Create_needs_a_file()
    {
        var run = await Refused("schedules", "create");

        Assert.Contains("fleetctl: Option '--file' is required", run.StderrLines);
    }

    [Fact]
    public async Task A_missing_file_names_the_option_and_the_path()
    {
        var run = await Refused("schedules", "create", "-f", "/nonexistent/weekly.yaml");

        Assert.Equal("fleetctl: invalid --file value '/nonexistent/weekly.yaml': no such file", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task An_empty_name_is_refused()
    {
        var run = await Refused("schedules", "show", " ");

        Assert.Equal("fleetctl: the schedule's name or id must not be empty", run.StderrLines[0]);
    }

    [Fact]
    public async Task An_unknown_subcommand_points_at_help()
    {
        var run = await Refused("schedules", "fire");

        Assert.Equal("Run 'fleetctl schedules --help' for usage.", run.StderrLines[^1]);
    }
}
