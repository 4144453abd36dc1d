using Fleet.Agent.Policy;
using Fleet.Agent.Tasks;
using Fleet.Agent.Tasks.Runbook;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Agent.Tests.Tasks;

public sealed class ValidationAndJournalTests
{
    [Theory]
    [InlineData("service.status", "service", "nginx\n")]
    [InlineData("service.restart", "service", "nginx\n")]
    [InlineData("app.command", "command", "build\n")]
    [InlineData("logs.scan", "lines", "10\n")]
    public void Value_with_a_trailing_newline_does_not_match_a_task_pattern(string task, string parameter, string value)
    {
        Assert.True(TaskRegistry.Default.TryGet(task, out var t));
        var given = new Dictionary<string, string> { [parameter] = value };
        if (task == "logs.scan") given["path"] = "/var/log/app.log";

        var ex = Assert.Throws<TaskParameterException>(() => TaskParameters.Validate(t.Descriptor, given));

        Assert.Equal(parameter, ex.Field);
    }

    [Fact]
    public void Path_glob_does_not_match_a_path_with_a_trailing_newline()
    {
        Assert.True(PathGlob.TryCreate("/nonexistent-fleet/app.log", out var exact, out _));
        Assert.True(PathGlob.TryCreate("/nonexistent-fleet/**", out var tree, out _));

        Assert.True(exact!.IsMatch("/nonexistent-fleet/app.log"));
        Assert.False(exact.IsMatch("/nonexistent-fleet/app.log\n"));
        Assert.True(tree!.IsMatch("/nonexistent-fleet/a/b.log"));
    }

    [Fact]
    public void Finished_entry_is_kept_for_thirty_days_so_a_late_redelivery_is_not_run_again()
    {
        using var state = new TempDirectory();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using (var journal = InvocationJournal.Open(state.Path, time, NullLogger<InvocationJournal>.Instance))
        {
            journal.RecordStarted("inv-old");
            journal.RecordFinished("inv-old", new TaskFinished { Status = Fleet.Protocol.V1.TaskStatus.Succeeded, Summary = "done" });
        }

        time.Advance(TimeSpan.FromDays(8));
        TaskFinished? afterEightDays;
        using (var journal = InvocationJournal.Open(state.Path, time, NullLogger<InvocationJournal>.Instance))
            afterEightDays = journal.Find("inv-old")?.Finished;
        time.Advance(TimeSpan.FromDays(23));
        InvocationJournal.Entry? afterThirtyOneDays;
        using (var journal = InvocationJournal.Open(state.Path, time, NullLogger<InvocationJournal>.Instance))
            afterThirtyOneDays = journal.Find("inv-old");

        Assert.Equal("done", afterEightDays?.Summary);
        Assert.Null(afterThirtyOneDays);
        Assert.True(InvocationJournal.MaxEntries >= 100_000);
    }

    [Fact]
    public void Clip_keeps_text_that_fits_and_cuts_longer_text_at_a_character_boundary()
    {
        var fits = new string('a', 100);
        var emoji = string.Concat(Enumerable.Repeat("😀", 100)); // 4 UTF-8 bytes each

        var clipped = ResultLimits.Clip(emoji, 50);

        Assert.Same(fits, ResultLimits.Clip(fits, 100));
        Assert.EndsWith(ResultLimits.ClippedMarker, clipped, StringComparison.Ordinal);
        Assert.InRange(System.Text.Encoding.UTF8.GetByteCount(clipped), 1, 50);
        Assert.False(char.IsHighSurrogate(clipped[^(ResultLimits.ClippedMarker.Length + 1)]));
    }
}
