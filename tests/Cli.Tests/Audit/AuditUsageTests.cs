using Fleet.Testing;

namespace Fleet.Cli.Tests.Audit;

/// <summary>Bad audit options are usage errors (exit 2) naming the option and the value, before any call.</summary>
public sealed class AuditUsageTests
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

    [Theory]
    [InlineData("soon")]
    [InlineData("-1d")]
    [InlineData("0")]
    [InlineData("0d")]
    [InlineData("30x")]
    [InlineData("d")]
    [InlineData("1d5")]
    [InlineData("1000000d")]
    public async Task Bad_since_is_a_usage_error_naming_the_option_and_value(string value)
    {
        var list = await Run("audit", "list", "--since", value);
        var export = await Run("audit", "export", "--since", value);

        AssertUsageError(list, "--since", $"'{value}'", "30d");
        Assert.Single(list.StderrLines);
        AssertUsageError(export, "--since", $"'{value}'");
    }

    [Theory]
    [InlineData("--from", "yesterday")]
    [InlineData("--from", "14/03/2025")]
    [InlineData("--to", "2025-13-01")]
    [InlineData("--to", "2025-03-14T25:00:00Z")]
    [InlineData("--limit", "0")]
    [InlineData("--limit", "ten")]
    public async Task Bad_list_option_values_are_usage_errors(string option, string value)
    {
        var run = await Run("audit", "list", option, value);

        AssertUsageError(run, option, $"'{value}'");
        Assert.Single(run.StderrLines);
    }

    [Fact]
    public async Task Bad_from_next_to_a_good_to_is_still_one_clean_usage_error()
    {
        var run = await Run("audit", "list", "--from", "yesterday", "--to", "2025-03-14");

        AssertUsageError(run, "--from", "'yesterday'");
        Assert.Single(run.StderrLines);
    }

    [Fact]
    public async Task Bad_export_format_is_a_usage_error()
    {
        var run = await Run("audit", "export", "--since", "1d", "--format", "xml");

        AssertUsageError(run, "--format", "'xml'", "jsonl or csv");
    }

    [Fact]
    public async Task Since_and_from_together_are_a_usage_error()
    {
        var run = await Run("audit", "list", "--since", "1d", "--from", "2025-03-01");

        AssertUsageError(run, "--since and --from");
    }

    [Fact]
    public async Task To_before_from_is_a_usage_error()
    {
        var run = await Run("audit", "list", "--from", "2025-03-14", "--to", "2025-03-01");

        AssertUsageError(run, "--to 2025-03-01T00:00:00Z must be later than --from 2025-03-14T00:00:00Z");
    }

    [Fact]
    public async Task Export_needs_since_or_from()
    {
        var run = await Run("audit", "export", "--format", "csv");

        AssertUsageError(run, "--since or --from");
    }

    [Theory]
    [InlineData("30d", 30 * 24 * 60)]
    [InlineData("24h", 24 * 60)]
    [InlineData("90m", 90)]
    [InlineData("1d12h", 36 * 60)]
    [InlineData("1.5d", 36 * 60)]
    [InlineData(" 7D ", 7 * 24 * 60)]
    [InlineData("2d30m", 2 * 24 * 60 + 30)]
    public void Ages_accept_days_on_top_of_the_duration_syntax(string text, int minutes)
    {
        Assert.True(DurationText.TryParseAge(text, out var value));
        Assert.Equal(TimeSpan.FromMinutes(minutes), value);
    }

    [Fact]
    public async Task Help_lists_the_audit_commands()
    {
        var run = await _cli.RunAsync("audit", "--help");

        Assert.Equal(0, run.ExitCode);
        Assert.Contains("list", run.Stdout);
        Assert.Contains("verify", run.Stdout);
        Assert.Contains("export", run.Stdout);
    }
}
