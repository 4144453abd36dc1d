using Fleet.Cli.Runs;
using Fleet.Protocol.V1;

namespace Fleet.Cli.Tests.Runs;

/// <summary>The live display of fleetctl run --wait: redrawn in place on a terminal, one line per change elsewhere.</summary>
public sealed class RunProgressTests
{
    [Fact]
    public void On_a_terminal_the_block_is_redrawn_in_place_with_counts_and_hosts_per_state()
    {
        using var output = new StringWriter();
        var progress = new RunProgress(output, terminal: true, width: 200);
        var updates = RunsFleet.Progress("r-1", InvocationState.Failed);

        progress.Update(updates[2]);
        var first = output.ToString();
        progress.Update(updates[3]);
        var second = output.ToString()[first.Length..];

        Assert.Equal(
            "run r-1 health.check: in_progress  1/2 done (1 succeeded, 0 did not)\n"
            + "  running               1  web-02\n"
            + "  succeeded             1  web-01\n", first);
        // Back up over the three lines just drawn, clear, draw again.
        Assert.StartsWith("\u001b[3F\u001b[J", second);
        Assert.Contains("run r-1 health.check: failed  2/2 done (1 succeeded, 1 did not)\n", second);
        Assert.Contains("  failed                1  web-02\n", second);
    }

    [Fact]
    public void On_a_terminal_lines_are_cut_to_its_width()
    {
        using var output = new StringWriter();
        var progress = new RunProgress(output, terminal: true, width: 20);

        progress.Update(RunsFleet.Progress("r-1", InvocationState.Failed)[0]);

        Assert.All(output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries), line => Assert.True(line.Length <= 20, line));
    }

    [Fact]
    public void Elsewhere_only_changes_are_written_without_escape_codes()
    {
        using var output = new StringWriter();
        var progress = new RunProgress(output, terminal: false, width: null);
        var updates = RunsFleet.Progress("r-1", InvocationState.Succeeded);

        progress.Update(updates[1]);
        progress.Update(updates[1]);
        progress.Update(updates[3]);

        Assert.Equal(
            "web-01 running\nweb-02 running\nweb-01 succeeded (exit 0): all 3 checks ok\nweb-02 succeeded (exit 0): checks done\n",
            output.ToString().ReplaceLineEndings("\n"));
    }
}
