using Fleet.Agent.Logs;
using Fleet.Agent.Tests.Commands;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Logs;

public sealed class JournalSourceTests
{
    [Fact]
    public async Task Journal_IsFollowedThroughJournalctl_AndResumesAfterTheAcknowledgedCursor()
    {
        using var standIns = new StandIns();
        var args = standIns.File("args.log");
        // A stand-in journalctl: records its arguments, prints entries after the cursor it is given, then "follows".
        standIns.Write("journalctl", $$"""
            echo "$*" >> '{{args}}'
            case "$*" in
              *"--after-cursor c2"*)
                echo '{"__CURSOR":"c3","__REALTIME_TIMESTAMP":"1714557602000000","PRIORITY":"4","MESSAGE":"third after restart"}' ;;
              *)
                echo '{"__CURSOR":"c1","__REALTIME_TIMESTAMP":"1714557600000000","PRIORITY":"3","MESSAGE":"db password=hunter2 refused"}'
                echo '{"__CURSOR":"c2","__REALTIME_TIMESTAMP":"1714557601000000","PRIORITY":"6","MESSAGE":[104,105,255]}' ;;
            esac
            echo $$ > '{{standIns.File("journalctl.pid")}}'
            exec sleep 300
            """);
        await using var h = new LogHarness(new LogSourceSettings { Name = "app-journal", JournalUnit = "interview-app" });
        h.Options.TaskCommandSearchPath = standIns.Bin + ":" + Environment.GetEnvironmentVariable("PATH");
        await h.StartAsync();

        var first = await h.ShippedUntilAsync(s => s.Count >= 2, what: "c1 and c2");
        Assert.Equal(["c1", "c2"], first.Select(e => e.Cursor).ToArray());
        Assert.Equal("db password=*** refused", first[0].Message);
        Assert.Equal("error", first[0].Severity);
        Assert.Equal(1714557600000, first[0].TimeUnixMs);
        Assert.Equal("hi\uFFFD", first[1].Message);
        Assert.Equal("info", first[1].Severity);
        Assert.Equal("journal:interview-app", first[1].Path);
        Assert.Equal("", first[1].FileId);
        await h.StopAsync();

        h.Shipped.Clear();
        await h.StartAsync();
        var second = await h.ShippedUntilAsync(s => s.Count >= 1, what: "c3");
        Assert.Equal("third after restart", second.Single().Message);
        Assert.Equal("warn", second[0].Severity);
        var calls = File.ReadAllLines(args);
        Assert.Contains("--since now", calls[0], StringComparison.Ordinal);
        Assert.Contains("-o json --follow", calls[0], StringComparison.Ordinal);
        Assert.Contains("-u interview-app", calls[0], StringComparison.Ordinal);
        Assert.Contains("--after-cursor c2", calls[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Journalctl_ThatExits_IsRestartedAfterTheLastCursorRead()
    {
        using var standIns = new StandIns();
        var args = standIns.File("args.log");
        standIns.Write("journalctl", $$"""
            echo "$*" >> '{{args}}'
            case "$*" in
              *"--after-cursor k1"*) echo '{"__CURSOR":"k2","MESSAGE":"second run"}'; echo $$ > '{{standIns.File("journalctl.pid")}}'; exec sleep 300 ;;
              *) echo '{"__CURSOR":"k1","MESSAGE":"first run"}'; exit 1 ;;
            esac
            """);
        await using var h = new LogHarness(new LogSourceSettings { Name = "app-journal", JournalUnit = "interview-app" });
        h.Options.TaskCommandSearchPath = standIns.Bin + ":" + Environment.GetEnvironmentVariable("PATH");
        await h.StartAsync();

        var shipped = await h.ShippedUntilAsync(s => s.Count >= 2, ack: false, what: "both runs");
        Assert.Equal(["first run", "second run"], shipped.Select(e => e.Message).ToArray());
        Assert.True(h.Counters.JournalRestarts >= 1);
        Assert.Contains("--after-cursor k1", File.ReadAllLines(args)[1], StringComparison.Ordinal);
    }
}
