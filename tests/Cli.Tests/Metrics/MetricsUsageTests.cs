using Fleet.Testing;

namespace Fleet.Cli.Tests.Metrics;

/// <summary>Bad top/metrics options are usage errors (exit 2) naming the option and the value, before any call.</summary>
public sealed class MetricsUsageTests
{
    private readonly CliRunner _cli = new();

    // Nothing listens here: a usage error must be reported before any connection is tried.
    private readonly string _nowhere = $"http://127.0.0.1:{FreePort.Next()}";

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _nowhere, .. args]);

    private static void AssertUsageError(CliRun run, params string[] fragments)
    {
        Assert.Equal(2, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.StartsWith("fleetctl: ", run.StderrLines[0]);
        foreach (var fragment in fragments) Assert.Contains(fragment, run.StderrLines[0]);
        Assert.DoesNotContain("cannot reach", run.Stderr);
    }

    private static void AssertOptionValueError(CliRun run, params string[] fragments)
    {
        AssertUsageError(run, fragments);
        Assert.Single(run.StderrLines);
    }

    [Theory]
    [InlineData("soon")]
    [InlineData("0")]
    [InlineData("-1h")]
    [InlineData("30x")]
    [InlineData("1d5")]
    public async Task Bad_since_is_a_usage_error_naming_the_option(string value)
    {
        var run = await Run("metrics", "web-02", "cpu.usage", "--since", value);

        AssertOptionValueError(run, "--since", $"'{value}'", "7d");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("500ms")]
    [InlineData("1.5s")]
    [InlineData("25h")]
    [InlineData("often")]
    public async Task Bad_step_is_a_usage_error_naming_the_option(string value)
    {
        var run = await Run("metrics", "web-02", "cpu.usage", "--step", value);

        AssertOptionValueError(run, "--step", $"'{value}'", "whole seconds");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("500ms")]
    [InlineData("fast")]
    public async Task Bad_watch_is_a_usage_error_naming_the_option(string value)
    {
        var run = await Run("top", "--watch", value);

        AssertOptionValueError(run, "--watch", $"'{value}'", "at least 1s");
    }

    [Fact]
    public async Task Watch_count_without_watch_is_a_usage_error()
    {
        var run = await Run("top", "--watch-count", "2");

        AssertUsageError(run, "--watch-count needs --watch");
    }

    [Fact]
    public async Task Table_and_json_together_are_a_usage_error()
    {
        var run = await Run("metrics", "web-02", "cpu.usage", "--table", "--json");

        AssertUsageError(run, "--table and --json cannot be used together");
    }

    [Fact]
    public async Task Metrics_without_a_name_is_a_usage_error_pointing_at_help()
    {
        var run = await Run("metrics", "web-02");

        Assert.Equal(2, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.Contains("Run 'fleetctl metrics --help' for usage.", run.Stderr);
    }
}
