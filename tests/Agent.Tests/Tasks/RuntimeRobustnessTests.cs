using System.Runtime.Versioning;
using System.Text;
using System.Text.Json;
using Fleet.Agent.Tasks;
using Fleet.Agent.Tests.Commands;
using Fleet.Agent.Tests.Probes;
using Fleet.Protocol.V1;
using Fleet.Testing;
using TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Agent.Tests.Tasks;

/// <summary>Cancels that race dispatches, redeliveries whose publish is cancelled, bounded results and what reaches the logs.</summary>
[Collection(CommandsCollection.Name)]
[SupportedOSPlatform("linux")]
public sealed class RuntimeRobustnessTests : IDisposable
{
    readonly StandIns standIns = new();

    public void Dispose() => standIns.Dispose();

    static Dictionary<string, string> P(params string[] pairs) =>
        Enumerable.Range(0, pairs.Length / 2).ToDictionary(i => pairs[2 * i], i => pairs[2 * i + 1]);

    string CountingPolicy(string sideEffects) =>
        $"{{\"tasks\": {{\"app.command\": {{\"commands\": {{\"count\": {{\"command\": [\"{standIns.Write("count", $"echo ran >> '{sideEffects}'; echo done")}\"]}}}}}}}}}}";

    [Fact]
    public async Task Cancel_that_arrives_before_the_dispatch_finishes_it_cancelled_without_running()
    {
        var sideEffects = standIns.File("side-effects.txt");
        await using var harness = TaskHarness.Create(standIns, CountingPolicy(sideEffects));

        harness.Runtime.Cancel("inv-early", "the operator cancelled the run");
        var finished = await harness.RunAsync("inv-early", "app.command", P("command", "count"));

        Assert.Equal(TaskStatus.Cancelled, finished.Status);
        Assert.Equal("cancelled before it started: the operator cancelled the run", finished.Summary);
        Assert.DoesNotContain(harness.Updates("inv-early"), u => u.Started is not null);
        Assert.False(File.Exists(sideEffects));
        Assert.Equal(0, harness.Runtime.Active);
    }

    [Fact]
    public async Task Cancel_before_the_dispatch_still_holds_after_an_agent_restart()
    {
        var sideEffects = standIns.File("side-effects.txt");
        var state = Directory.CreateDirectory(standIns.File("state")).FullName;
        await using (var before = TaskHarness.Create(standIns, CountingPolicy(sideEffects), state))
        {
            before.Runtime.Cancel("inv-early", "cancelled");
        }

        await using var after = TaskHarness.Create(standIns, CountingPolicy(sideEffects), state);
        await after.Runtime.StartAsync(CancellationToken.None);
        var finished = await after.RunAsync("inv-early", "app.command", P("command", "count"));

        Assert.Equal(TaskStatus.Cancelled, finished.Status);
        Assert.False(File.Exists(sideEffects));
    }

    [Fact]
    public async Task Cancel_of_an_invocation_waiting_for_a_slot_finishes_it_cancelled_without_running()
    {
        var gate = new Gate();
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"test.a": {}}}""", tasks: [new GateTask("test.a", gate)], maxConcurrent: 1);

        await harness.DispatchAsync("a-running", "test.a");
        await Eventually.UntilAsync(() => gate.Running == 1, "the first invocation running");
        await harness.DispatchAsync("a-queued", "test.a");
        Assert.Equal(2, harness.Runtime.Active);
        harness.Runtime.Cancel("a-queued", "no longer needed");
        var cancelled = await harness.FinishedAsync("a-queued");
        gate.Opened.SetResult();
        var first = await harness.FinishedAsync("a-running");

        Assert.Equal(TaskStatus.Cancelled, cancelled.Status);
        Assert.Equal("cancelled before it started: no longer needed", cancelled.Summary);
        Assert.DoesNotContain(harness.Updates("a-queued"), u => u.Started is not null);
        Assert.Equal(TaskStatus.Succeeded, first.Status);
        Assert.Equal(1, gate.Entered);
    }

    [Fact]
    public async Task Redelivery_whose_stream_is_cancelled_still_resends_and_a_later_redelivery_is_not_ignored()
    {
        var sideEffects = standIns.File("side-effects.txt");
        await using var harness = TaskHarness.Create(standIns, CountingPolicy(sideEffects));
        var first = await harness.RunAsync("inv-1", "app.command", P("command", "count"));

        using var dropped = new CancellationTokenSource();
        await dropped.CancelAsync(); // the stream went away while the redelivered dispatch was being handled
        try { await harness.DispatchAsync("inv-1", "app.command", P("command", "count"), cancellationToken: dropped.Token); }
        catch (OperationCanceledException) { } // tolerated here; what matters is the runtime's state afterwards
        await harness.DispatchAsync("inv-1", "app.command", P("command", "count"));
        var resent = await harness.FinishedAsync("inv-1", count: 3);

        Assert.Equal(first, resent);
        Assert.Equal(["ran"], File.ReadAllLines(sideEffects));
        Assert.Equal(0, harness.Runtime.Active);
    }

    [Fact]
    public async Task Redelivery_of_an_interrupted_invocation_whose_stream_is_cancelled_is_not_stuck_as_running()
    {
        var sideEffects = standIns.File("side-effects.txt");
        await using var harness = TaskHarness.Create(standIns, CountingPolicy(sideEffects));
        harness.Journal.RecordStarted("inv-killed"); // started before a crash, recovery not yet run

        using var dropped = new CancellationTokenSource();
        await dropped.CancelAsync();
        try { await harness.DispatchAsync("inv-killed", "app.command", P("command", "count"), cancellationToken: dropped.Token); }
        catch (OperationCanceledException) { }
        await harness.DispatchAsync("inv-killed", "app.command", P("command", "count"));
        var finished = await harness.FinishedAsync("inv-killed", count: 2);

        Assert.Equal(FailureKinds.Interrupted, finished.FailureKind);
        Assert.False(File.Exists(sideEffects));
        Assert.Equal(0, harness.Runtime.Active);
    }

    [Fact]
    public async Task Task_that_throws_is_logged_by_type_and_masked_message_never_with_the_secret()
    {
        var logger = new CapturingLogger<TaskRuntime>();
        var task = new ScriptedTask("test.throws", c => throw new InvalidOperationException("login failed for " + c.Parameters.String("password")));
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"test.throws": {}}}""", tasks: [task], logger: logger);

        var finished = await harness.RunAsync("inv-throws", "test.throws", P("password", "S3cr3t-Value"));

        Assert.Equal(TaskStatus.Failed, finished.Status);
        Assert.DoesNotContain("S3cr3t-Value", finished.Error, StringComparison.Ordinal);
        Assert.Contains(logger.Lines, l => l.Contains("InvalidOperationException: login failed for ***", StringComparison.Ordinal));
        Assert.DoesNotContain("S3cr3t-Value", logger.All, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Oversized_summary_error_and_result_json_are_clipped_so_the_result_fits_one_message()
    {
        var hugeJson = "{\"blob\":\"" + new string('x', 1024 * 1024) + "\"}";
        var task = new ScriptedTask("test.huge", _ => TaskOutcome.Failed(new string('e', 100_000), resultJson: hugeJson) with { Summary = new string('s', 10_000) });
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"test.huge": {}}}""", tasks: [task]);

        var finished = await harness.RunAsync("inv-huge", "test.huge");

        Assert.InRange(Encoding.UTF8.GetByteCount(finished.Summary), 1, ResultLimits.MaxSummaryBytes);
        Assert.EndsWith(ResultLimits.ClippedMarker, finished.Summary, StringComparison.Ordinal);
        Assert.InRange(Encoding.UTF8.GetByteCount(finished.Error), 1, ResultLimits.MaxErrorBytes);
        Assert.EndsWith(ResultLimits.ClippedMarker, finished.Error, StringComparison.Ordinal);
        using var json = JsonDocument.Parse(finished.ResultJson);
        Assert.True(json.RootElement.GetProperty("clipped").GetBoolean());
        Assert.Equal(Encoding.UTF8.GetByteCount(hugeJson), json.RootElement.GetProperty("originalBytes").GetInt32());
        Assert.Equal(finished, harness.Journal.Find("inv-huge")?.Finished);
    }

    [Fact]
    public async Task Logs_scan_of_very_long_matching_lines_returns_clipped_lines_within_the_result_bound()
    {
        using var logs = new TempDirectory();
        var log = logs.Combine("app.log");
        var longLine = "ERROR " + new string('y', 30 * 1024);
        await File.WriteAllLinesAsync(log, Enumerable.Repeat(longLine, 210));
        await using var harness = TaskHarness.Create(standIns, "{\"tasks\": {\"logs.scan\": {\"paths\": [\"" + logs.Path + "/**\"]}}}");

        var finished = await harness.RunAsync("inv-scan", "logs.scan", P("path", log, "lines", "1"));

        Assert.Equal(TaskStatus.Succeeded, finished.Status);
        Assert.InRange(Encoding.UTF8.GetByteCount(finished.ResultJson), 1, ResultLimits.MaxResultJsonBytes);
        using var json = JsonDocument.Parse(finished.ResultJson);
        Assert.Equal(210, json.RootElement.GetProperty("matched").GetInt32());
        var matches = json.RootElement.GetProperty("matches").EnumerateArray().Select(m => m.GetString()!).ToList();
        Assert.NotEmpty(matches);
        Assert.All(matches, m =>
        {
            Assert.InRange(Encoding.UTF8.GetByteCount(m), 1, ResultLimits.MaxLineBytes);
            Assert.StartsWith("ERROR yyy", m, StringComparison.Ordinal);
            Assert.EndsWith(ResultLimits.ClippedMarker, m, StringComparison.Ordinal);
        });
        Assert.Equal(matches.Count, json.RootElement.GetProperty("matchesInResult").GetInt32());
    }

    [Fact]
    public async Task Service_name_with_a_trailing_newline_is_a_parameter_failure()
    {
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"service.status": {"services": ["nginx"]}}}""");

        var finished = await harness.RunAsync("inv-newline", "service.status", P("service", "nginx\n"));

        Assert.Equal(TaskStatus.Failed, finished.Status);
        Assert.Equal(FailureKinds.Parameter, finished.FailureKind);
    }

    [Fact]
    public async Task Int_parameter_is_accepted_as_64_bit_and_a_task_needing_int32_gets_a_range_error()
    {
        var wide = new ScriptedTask("test.wide", c => TaskOutcome.Succeeded(c.Parameters.Long("count")!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        var narrow = new ScriptedTask("test.narrow", c => TaskOutcome.Succeeded(c.Parameters.Int("count")!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"test.wide": {}, "test.narrow": {}}}""", tasks: [wide, narrow]);

        var accepted = await harness.RunAsync("inv-wide", "test.wide", P("count", "9999999999"));
        var refused = await harness.RunAsync("inv-narrow", "test.narrow", P("count", "9999999999"));

        Assert.Equal(TaskStatus.Succeeded, accepted.Status);
        Assert.Equal("9999999999", accepted.Summary);
        Assert.Equal(TaskStatus.Failed, refused.Status);
        Assert.Equal(FailureKinds.Parameter, refused.FailureKind);
        Assert.Equal("parameter 'count': 9999999999 is out of range (-2147483648 to 2147483647)", refused.Error);
    }
}
