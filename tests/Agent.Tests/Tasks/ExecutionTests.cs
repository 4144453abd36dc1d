using System.Net;
using System.Net.Sockets;
using System.Runtime.Versioning;
using System.Text;
using Fleet.Agent.Probes;
using Fleet.Agent.Tasks;
using Fleet.Agent.Tests.Commands;
using Fleet.Protocol.V1;
using Fleet.Testing;
using TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Agent.Tests.Tasks;

[Collection(CommandsCollection.Name)]
[SupportedOSPlatform("linux")]
public sealed class ExecutionTests : IDisposable
{
    readonly StandIns standIns = new();

    public void Dispose() => standIns.Dispose();

    static Dictionary<string, string> P(string name, string value) => new() { [name] = value };

    string AppPolicy(params (string Name, string Script)[] commands) =>
        "{\"tasks\": {\"app.command\": {\"commands\": {"
        + string.Join(", ", commands.Select(c => $"\"{c.Name}\": {{\"command\": [\"{standIns.Write(c.Name, c.Script)}\"]}}"))
        + "}}}}";

    [Fact]
    public async Task Finished_invocation_dispatched_again_is_not_executed_again_and_its_result_is_resent()
    {
        var sideEffects = standIns.File("side-effects.txt");
        await using var harness = TaskHarness.Create(standIns, AppPolicy(("count", $"echo ran >> '{sideEffects}'; echo done")));

        var first = await harness.RunAsync("inv-1", "app.command", P("command", "count"));
        await harness.DispatchAsync("inv-1", "app.command", P("command", "count"));
        var second = await harness.FinishedAsync("inv-1", count: 2);

        Assert.Equal(TaskStatus.Succeeded, first.Status);
        Assert.Equal(first, second);
        Assert.Equal(["ran"], File.ReadAllLines(sideEffects));
        Assert.Single(harness.Updates("inv-1"), u => u.BodyCase == TaskUpdate.BodyOneofCase.Started);
    }

    [Fact]
    public async Task Started_but_unfinished_invocation_is_reported_interrupted_once_on_restart_and_never_run()
    {
        var sideEffects = standIns.File("side-effects.txt");
        var state = Directory.CreateDirectory(standIns.File("state")).FullName;
        var policy = AppPolicy(("count", $"echo ran >> '{sideEffects}'"));
        await using (var before = TaskHarness.Create(standIns, policy, state))
        {
            before.Journal.RecordStarted("inv-killed"); // as if the agent was kill -9'd while it ran
        }
        // A torn last line (power loss mid-write) is tolerated.
        await File.AppendAllTextAsync(Path.Combine(state, "tasks", "journal.jsonl"), "{\"id\":\"inv-x\",\"at\":12");

        await using var after = TaskHarness.Create(standIns, policy, state);
        await after.Runtime.StartAsync(CancellationToken.None);
        await after.Runtime.StartAsync(CancellationToken.None);
        var finished = await after.FinishedAsync("inv-killed");
        await after.DispatchAsync("inv-killed", "app.command", P("command", "count"));
        await after.FinishedAsync("inv-killed", count: 2);

        Assert.Equal(TaskStatus.Failed, finished.Status);
        Assert.Equal("interrupted", finished.FailureKind);
        Assert.Equal("interrupted: the agent restarted while the task was running; not re-run", finished.Error);
        Assert.Equal(2, after.Updates("inv-killed").Count);
        Assert.All(after.Updates("inv-killed"), u => Assert.Equal("interrupted", u.Finished?.FailureKind));
        Assert.False(File.Exists(sideEffects));
        Assert.Empty(after.Journal.Unfinished());
    }

    [Fact]
    public async Task Execution_timeout_finishes_timed_out()
    {
        await using var harness = TaskHarness.Create(standIns, AppPolicy(("slow", "echo $$ > '" + standIns.File("slow.pid") + "'; exec sleep 60")));

        var finished = await harness.RunAsync("inv-slow", "app.command", P("command", "slow"), timeout: TimeSpan.FromSeconds(1));

        Assert.Equal(TaskStatus.TimedOut, finished.Status);
        Assert.Contains("timed out after 1s", finished.Error, StringComparison.Ordinal);
        Assert.True(StandIns.IsGone(await standIns.ReadPidAsync("slow.pid")));
    }

    [Fact]
    public async Task Cancel_finishes_cancelled_and_the_child_process_is_gone()
    {
        await using var harness = TaskHarness.Create(standIns, AppPolicy(("hang", "echo $$ > '" + standIns.File("hang.pid") + "'; exec sleep 60")));
        await harness.DispatchAsync("inv-hang", "app.command", P("command", "hang"));
        var pid = await standIns.ReadPidAsync("hang.pid");

        harness.Runtime.Cancel("inv-hang", "operator asked");
        var finished = await harness.FinishedAsync("inv-hang");

        Assert.Equal(TaskStatus.Cancelled, finished.Status);
        Assert.Equal("operator asked", finished.Error);
        Assert.True(StandIns.IsGone(pid));
    }

    [Fact]
    public async Task Secret_parameter_value_and_credentials_never_appear_in_updates()
    {
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"test.leaky": {}}}""", tasks: [new LeakyTask()]);

        var finished = await harness.RunAsync("inv-leaky", "test.leaky", P("password", "Sup3rS3cretValue"));

        var everything = string.Join("\n", harness.Updates("inv-leaky").Select(u => u.ToString()));
        var output = harness.OutputText("inv-leaky");
        foreach (var secret in new[] { "Sup3rS3cretValue", "hunter22", "abc123def", "eyJhbGciOi" })
        {
            Assert.DoesNotContain(secret, output, StringComparison.Ordinal);
            Assert.DoesNotContain(secret, everything, StringComparison.Ordinal);
        }
        Assert.Contains("connecting with *** now", output, StringComparison.Ordinal);
        Assert.Equal("login failed for ***", finished.Error);
        Assert.Equal((ulong)Encoding.UTF8.GetByteCount(output), finished.OutputBytes);
    }

    [Fact]
    public async Task Output_over_one_mebibyte_arrives_as_ordered_chunks_identical_to_what_the_command_printed()
    {
        await using var harness = TaskHarness.Create(standIns, AppPolicy(("big", "seq 1 250000; echo tail-without-newline | tr -d '\\n'")));

        var finished = await harness.RunAsync("inv-big", "app.command", P("command", "big"));

        var expected = string.Concat(Enumerable.Range(1, 250000).Select(i => i + "\n")) + "tail-without-newline";
        var output = harness.Output("inv-big");
        Assert.Equal(TaskStatus.Succeeded, finished.Status);
        Assert.True(output.Length > 1024 * 1024);
        Assert.Equal(Encoding.UTF8.GetBytes(expected), output);
        Assert.Equal((ulong)output.Length, finished.OutputBytes);
        Assert.True(harness.Updates("inv-big").Count(u => u.BodyCase == TaskUpdate.BodyOneofCase.Output) > 1);
        Assert.All(harness.Updates("inv-big").Where(u => u.Output is not null), u => Assert.True(u.Output.Data.Length <= InvocationOutput.ChunkBytes));
    }

    [Fact]
    public async Task At_most_two_invocations_run_at_once_and_never_two_of_the_same_task()
    {
        var gate = new Gate();
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"test.a": {}, "test.b": {}, "test.c": {}}}""",
            tasks: [new GateTask("test.a", gate), new GateTask("test.b", gate), new GateTask("test.c", gate)]);

        await harness.DispatchAsync("a-1", "test.a");
        await harness.DispatchAsync("a-2", "test.a");
        await harness.DispatchAsync("b-1", "test.b");
        await harness.DispatchAsync("c-1", "test.c");
        await Eventually.UntilAsync(() => gate.Running == 2, "two invocations running");
        // The Started update is written as the task begins, not before it enters the gate: wait for both, then count all.
        var startedWhileClosed = await Eventually.UntilAsync(
            () => Task.FromResult(new[] { "a-1", "a-2", "b-1", "c-1" }.Count(id => harness.Updates(id).Any(u => u.Started is not null))),
            n => n >= 2, "the two running invocations' Started updates");
        gate.Opened.SetResult();
        foreach (var id in new[] { "a-1", "a-2", "b-1", "c-1" })
            Assert.Equal(TaskStatus.Succeeded, (await harness.FinishedAsync(id)).Status);

        Assert.Equal(2, startedWhileClosed);
        Assert.Equal(2, gate.MaxRunning);
        Assert.Equal(1, gate.MaxSameTask);
        Assert.Equal(4, gate.Entered);
    }

    [Fact]
    public async Task Dry_run_of_service_restart_runs_no_systemctl_and_says_what_it_would_do()
    {
        var calls = standIns.File("systemctl.calls");
        standIns.Write("systemctl", $"echo \"$@\" >> '{calls}'; echo active");
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"service.restart": {"services": ["nginx"]}}}""");

        var finished = await harness.RunAsync("inv-dry", "service.restart", P("service", "nginx"), dryRun: true);

        Assert.Equal(TaskStatus.Succeeded, finished.Status);
        Assert.True(harness.Updates("inv-dry").Single(u => u.Started is not null).Started.DryRun);
        Assert.Contains("would run: systemctl restart nginx", harness.OutputText("inv-dry"), StringComparison.Ordinal);
        Assert.False(File.Exists(calls));
    }

    [Fact]
    public async Task Service_restart_restarts_then_verifies_with_systemctl_is_active()
    {
        var calls = standIns.File("systemctl.calls");
        standIns.Write("systemctl", $"echo \"$@\" >> '{calls}'; echo active");
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"service.restart": {"services": ["nginx"]}}}""");

        var finished = await harness.RunAsync("inv-restart", "service.restart", P("service", "nginx"));

        Assert.Equal(TaskStatus.Succeeded, finished.Status);
        Assert.Equal(["restart nginx", "is-active nginx"], File.ReadAllLines(calls));
    }

    [Fact]
    public async Task Health_check_reports_an_open_listener_ok_and_a_closed_port_failed()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var open = ((IPEndPoint)listener.LocalEndpoint).Port;
        var closed = FreePort.Next();
        ProbeSettings Tcp(string name, int port) => new() { Name = name, Kind = "tcp", Address = $"127.0.0.1:{port}", Timeout = TimeSpan.FromSeconds(5) };
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"health.check": {}}}""", probes: [Tcp("listening", open), Tcp("closed", closed)]);

        var all = await harness.RunAsync("inv-health", "health.check");
        var one = await harness.RunAsync("inv-health-one", "health.check", P("probe", "listening"));

        Assert.Equal(TaskStatus.Failed, all.Status);
        Assert.Equal("task", all.FailureKind);
        Assert.Contains("closed: connection refused", all.Error, StringComparison.Ordinal);
        Assert.Equal(1, all.Figures["probes.failed"]);
        using var json = System.Text.Json.JsonDocument.Parse(all.ResultJson);
        var probes = json.RootElement.GetProperty("probes").EnumerateArray().ToDictionary(p => p.GetProperty("name").GetString()!, p => p.GetProperty("ok").GetBoolean());
        Assert.Equal(new Dictionary<string, bool> { ["listening"] = true, ["closed"] = false }, probes);
        Assert.Equal(TaskStatus.Succeeded, one.Status);
        Assert.Equal("1 probes ok", one.Summary);
    }

    [Fact]
    public async Task System_resources_reports_memory_disk_and_top_processes()
    {
        await using var harness = TaskHarness.Create(standIns, """{"tasks": {"system.resources": {}}}""");

        var finished = await harness.RunAsync("inv-res", "system.resources");

        Assert.Equal(TaskStatus.Succeeded, finished.Status);
        Assert.InRange(finished.Figures["memory.used_ratio"], 0, 1);
        Assert.InRange(finished.Figures["cpu.usage"], 0, 1);
        using var json = System.Text.Json.JsonDocument.Parse(finished.ResultJson);
        Assert.InRange(json.RootElement.GetProperty("topByMemory").GetArrayLength(), 1, 5);
        Assert.Contains("top by cpu:", harness.OutputText("inv-res"), StringComparison.Ordinal);
    }
}
