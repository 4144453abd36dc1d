using System.Diagnostics;
using System.Runtime.Versioning;
using System.Text;
using Fleet.Agent.Commands;
using Fleet.Testing;
using Microsoft.Extensions.Logging;

namespace Fleet.Agent.Tests.Commands;

/// <summary>Serialises the command tests: writing a script while another test forks can make exec fail with ETXTBSY.</summary>
[CollectionDefinition(Name)]
public sealed class CommandsCollection
{
    public const string Name = "Commands";
}

[Collection(CommandsCollection.Name)]
[SupportedOSPlatform("linux")]
public sealed class CommandRunnerTests : IDisposable
{
    private readonly StandIns _standIns = new();
    private readonly CommandRunner _runner = StandIns.Runner();

    public void Dispose() => _standIns.Dispose();

    [Fact]
    public async Task Stand_in_systemctl_receives_arguments_exactly_as_passed_and_its_output_and_exit_code_come_back()
    {
        var argsFile = _standIns.File("systemctl.args");
        _standIns.Write("systemctl", $"""
            for a in "$@"; do printf '%s\0' "$a" >> '{argsFile}'; done
            echo "active"
            echo "second line"
            """);
        string[] arguments =
        [
            "restart", "my app.service", "it's \"quoted\"", "$HOME", "*", "; rm -rf / #", "`id`", "", "multi\nline", "ünïcødé",
        ];

        var result = await _runner.RunAsync(_standIns.Spec("systemctl", arguments), CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.Exited, result.Outcome);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("active\nsecond line\n", result.StandardOutput);
        Assert.Equal("", result.StandardError);
        Assert.False(result.OutputTruncated);
        Assert.Null(result.Error);
        var received = File.ReadAllText(argsFile, Encoding.UTF8).Split('\0')[..^1];
        Assert.Equal(arguments, received);
    }

    [Fact]
    public async Task Non_zero_exit_code_is_reported_as_exited()
    {
        _standIns.Write("pg_dump", "echo 'pg_dump: error: connection refused' >&2\nexit 3");

        var result = await _runner.RunAsync(_standIns.Spec("pg_dump"), CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.Exited, result.Outcome);
        Assert.Equal(3, result.ExitCode);
        Assert.Equal("pg_dump: error: connection refused\n", result.StandardError);
    }

    [Fact]
    public async Task Stderr_is_captured_separately_and_streamed_with_its_stream_tag()
    {
        _standIns.Write("journalctl", "echo to-stdout\necho to-stderr >&2\necho more-stdout");
        var chunks = new List<OutputChunk>();
        var spec = _standIns.Spec("journalctl") with
        {
            OnOutput = (chunk, _) => { lock (chunks) chunks.Add(chunk); return ValueTask.CompletedTask; },
        };

        var result = await _runner.RunAsync(spec, CancellationToken.None).DefaultTimeout();

        Assert.Equal("to-stdout\nmore-stdout\n", result.StandardOutput);
        Assert.Equal("to-stderr\n", result.StandardError);
        Assert.Equal("to-stdout\nmore-stdout\n", string.Concat(chunks.Where(c => c.Stream == OutputStream.StandardOutput).Select(c => c.Text)));
        Assert.Equal("to-stderr\n", string.Concat(chunks.Where(c => c.Stream == OutputStream.StandardError).Select(c => c.Text)));
    }

    [Fact]
    public async Task Environment_variables_and_working_directory_reach_the_child()
    {
        const string removed = "FLEET_COMMANDS_TEST_REMOVED";
        Environment.SetEnvironmentVariable(removed, "inherited");
        var workDir = Directory.CreateDirectory(_standIns.File("work dir")).FullName;
        _standIns.Write("app", $$"""
            echo "var=$FLEET_TEST_VAR"
            echo "removed=${{{removed}}-unset}"
            echo "inherited=${FLEET_COMMANDS_TEST_INHERITED-unset}"
            pwd
            """);
        Environment.SetEnvironmentVariable("FLEET_COMMANDS_TEST_INHERITED", "yes");
        var spec = _standIns.Spec("app");
        spec = spec with
        {
            WorkingDirectory = workDir,
            Environment = new Dictionary<string, string?>(spec.Environment!) { ["FLEET_TEST_VAR"] = "hello 'world'", [removed] = null },
        };

        var result = await _runner.RunAsync(spec, CancellationToken.None).DefaultTimeout();

        Assert.Equal($"var=hello 'world'\nremoved=unset\ninherited=yes\n{workDir}\n", result.StandardOutput);
    }

    [Fact]
    public async Task Standard_input_is_delivered_and_closed()
    {
        _standIns.Write("psql", "cat");
        var input = "SELECT 1;\nSELECT 'ünïcødé';\n" + new string('x', 300_000); // larger than a pipe buffer

        var result = await _runner.RunAsync(_standIns.Spec("psql") with { StandardInput = input }, CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.Exited, result.Outcome);
        Assert.Equal(input, result.StandardOutput);
    }

    [Fact]
    public async Task Without_standard_input_the_child_reads_end_of_file_instead_of_hanging()
    {
        _standIns.Write("psql", "cat; echo eof");

        var result = await _runner.RunAsync(_standIns.Spec("psql"), CancellationToken.None).DefaultTimeout();

        Assert.Equal("eof\n", result.StandardOutput);
    }

    [Fact]
    public async Task Five_megabytes_on_both_streams_do_not_deadlock_are_truncated_and_are_all_streamed()
    {
        const int size = 5 * 1024 * 1024;
        // stderr first, all of it, while nothing is written to stdout: a reader that drained the streams one after
        // the other would deadlock here.
        _standIns.Write("logrotate", $"head -c {size} /dev/zero | tr '\\0' e >&2\nhead -c {size} /dev/zero | tr '\\0' o");
        long streamedOut = 0, streamedErr = 0;
        var spec = _standIns.Spec("logrotate") with
        {
            OnOutput = (chunk, _) =>
            {
                if (chunk.Stream == OutputStream.StandardOutput) Interlocked.Add(ref streamedOut, chunk.Text.Count(c => c == 'o'));
                else Interlocked.Add(ref streamedErr, chunk.Text.Count(c => c == 'e'));
                return ValueTask.CompletedTask;
            },
        };

        var result = await _runner.RunAsync(spec, CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.Exited, result.Outcome);
        Assert.Equal(0, result.ExitCode);
        Assert.True(result.OutputTruncated);
        Assert.Equal(new string('o', spec.MaxCapturedBytes), result.StandardOutput);
        Assert.Equal(new string('e', spec.MaxCapturedBytes), result.StandardError);
        Assert.Equal(size, streamedOut);
        Assert.Equal(size, streamedErr);
    }

    [Fact]
    public async Task Capture_limit_counts_utf8_bytes_and_never_splits_a_character()
    {
        _standIns.Write("app", "printf 'aé€😀z'"); // 1 + 2 + 3 + 4 + 1 bytes

        var result = await _runner.RunAsync(_standIns.Spec("app") with { MaxCapturedBytes = 8 }, CancellationToken.None).DefaultTimeout();

        Assert.Equal("aé€", result.StandardOutput);
        Assert.True(result.OutputTruncated);
    }

    [Fact]
    public async Task Timeout_kills_the_whole_tree_including_grandchildren_and_keeps_output_so_far()
    {
        var gc1 = _standIns.File("grandchild.pid");
        var gc2 = _standIns.File("great-grandchild.pid");
        _standIns.Write("pg_dump", $"""
            sleep 300 &
            echo $! > '{gc1}'
            sh -c 'sleep 300 & echo $! > "$1"; wait' sh '{gc2}' &
            echo "dumping"
            sleep 300
            """);
        var spec = _standIns.Spec("pg_dump") with { Timeout = TimeSpan.FromSeconds(2), KillGracePeriod = TimeSpan.FromSeconds(2) };

        var result = await _runner.RunAsync(spec, CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.TimedOut, result.Outcome);
        Assert.Equal("dumping\n", result.StandardOutput);
        Assert.Contains("Timed out", result.Error);
        Assert.True(result.Duration >= spec.Timeout, $"duration {result.Duration}");
        var grandchild = await _standIns.ReadPidAsync("grandchild.pid");
        var greatGrandchild = await _standIns.ReadPidAsync("great-grandchild.pid");
        await Eventually.UntilAsync(() => StandIns.IsGone(grandchild), $"grandchild {grandchild} to be gone", TimeSpan.FromSeconds(10));
        await Eventually.UntilAsync(() => StandIns.IsGone(greatGrandchild), $"great-grandchild {greatGrandchild} to be gone", TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_command_that_handles_sigterm_exits_through_its_handler_within_the_grace_period()
    {
        var marker = _standIns.File("trapped");
        var child = _standIns.File("child.pid");
        _standIns.Write("app", $"""
            trap 'echo handled > "{marker}"; echo "cleaning up"; exit 42' TERM
            sleep 300 &
            echo $! > '{child}'
            echo ready
            wait
            """);
        using var cts = new CancellationTokenSource();
        var grace = TimeSpan.FromSeconds(20);
        var spec = _standIns.Spec("app") with { KillGracePeriod = grace, OnOutput = CancelOn("ready", cts) };

        var clock = Stopwatch.StartNew();
        var result = await _runner.RunAsync(spec, cts.Token).DefaultTimeout();

        Assert.Equal(CommandOutcome.Cancelled, result.Outcome);
        Assert.Equal(42, result.ExitCode); // its own exit code: it was not SIGKILLed
        Assert.Equal("handled\n", File.ReadAllText(marker));
        Assert.Equal("ready\ncleaning up\n", result.StandardOutput);
        Assert.True(clock.Elapsed < grace / 2, $"took {clock.Elapsed}; the runner waited for the grace period");
        // What it left behind (the background sleep it did not stop) is killed once it has exited.
        var childPid = await _standIns.ReadPidAsync("child.pid");
        await Eventually.UntilAsync(() => StandIns.IsGone(childPid), $"left-over child {childPid} to be gone", TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_command_that_ignores_sigterm_is_killed_after_the_grace_period()
    {
        var marker = _standIns.File("finished");
        var self = _standIns.File("self.pid");
        _standIns.Write("app", $"""
            trap '' TERM
            echo $$ > '{self}'
            echo ready
            sleep 300
            echo finished > '{marker}'
            """);
        using var cts = new CancellationTokenSource();
        var grace = TimeSpan.FromSeconds(1);
        var cancelledAt = Stopwatch.StartNew();
        var spec = _standIns.Spec("app") with
        {
            KillGracePeriod = grace,
            OnOutput = async (chunk, token) => { if (chunk.Text.Contains("ready")) { cancelledAt.Restart(); await CancelOn("ready", cts)(chunk, token); } },
        };

        var result = await _runner.RunAsync(spec, cts.Token).DefaultTimeout();

        Assert.Equal(CommandOutcome.Cancelled, result.Outcome);
        Assert.Equal(128 + 9, result.ExitCode); // SIGKILL
        Assert.True(cancelledAt.Elapsed >= grace * 0.9, $"killed {cancelledAt.Elapsed} after cancelling; grace is {grace}");
        Assert.False(File.Exists(marker));
        var pid = await _standIns.ReadPidAsync("self.pid");
        Assert.True(StandIns.IsGone(pid));
    }

    [Fact]
    public async Task Cancellation_through_the_token_returns_cancelled_with_the_output_so_far()
    {
        _standIns.Write("apt-get", "echo 'Reading package lists...'\necho 'warning' >&2\nsleep 300");
        using var cts = new CancellationTokenSource();
        var spec = _standIns.Spec("apt-get", "install", "-y", "nginx") with { OnOutput = CancelOn("Reading", cts) };

        var result = await _runner.RunAsync(spec, cts.Token).DefaultTimeout();

        Assert.Equal(CommandOutcome.Cancelled, result.Outcome);
        Assert.Equal("Reading package lists...\n", result.StandardOutput);
        Assert.Equal("Cancelled", result.Error);
    }

    [Fact]
    public async Task An_already_cancelled_token_does_not_start_the_command()
    {
        var marker = _standIns.File("ran");
        _standIns.Write("app", $"touch '{marker}'");

        var result = await _runner.RunAsync(_standIns.Spec("app"), new CancellationToken(canceled: true)).DefaultTimeout();

        Assert.Equal(CommandOutcome.Cancelled, result.Outcome);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public async Task Missing_command_fails_to_start_naming_the_command_and_the_path_searched()
    {
        var spec = _standIns.Spec("fleet-no-such-command", "arg");

        var result = await _runner.RunAsync(spec, CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.FailedToStart, result.Outcome);
        Assert.Equal(-1, result.ExitCode);
        Assert.Contains("'fleet-no-such-command'", result.Error);
        Assert.Contains(spec.Environment!["PATH"]!, result.Error);
    }

    [Fact]
    public async Task Missing_absolute_path_fails_to_start()
    {
        var result = await _runner.RunAsync(_standIns.Spec(_standIns.File("nope")), CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.FailedToStart, result.Outcome);
        Assert.Contains(_standIns.File("nope"), result.Error);
    }

    [Fact]
    public async Task Non_executable_file_fails_to_start()
    {
        var path = _standIns.Write("systemctl-not-exec", "echo should not run", executable: false);

        var byName = await _runner.RunAsync(_standIns.Spec("systemctl-not-exec"), CancellationToken.None).DefaultTimeout();
        var byPath = await _runner.RunAsync(_standIns.Spec(path), CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.FailedToStart, byName.Outcome);
        Assert.Contains("'systemctl-not-exec'", byName.Error);
        Assert.Contains("not executable", byName.Error);
        Assert.Equal(CommandOutcome.FailedToStart, byPath.Outcome);
        Assert.Contains("not executable", byPath.Error);
    }

    [Fact]
    public async Task A_file_the_kernel_cannot_execute_fails_to_start_instead_of_throwing()
    {
        var path = Path.Combine(_standIns.Bin, "garbage");
        File.WriteAllBytes(path, [0x7f, 0x45, 0x4c, 0x46, 0, 0, 0, 0]); // truncated ELF header
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserExecute);

        var result = await _runner.RunAsync(_standIns.Spec("garbage"), CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.FailedToStart, result.Outcome);
        Assert.Contains("garbage", result.Error);
    }

    [Fact]
    public async Task Path_of_the_child_environment_wins_over_the_agents_path()
    {
        // "true" exists on the agent's PATH too; the stand-in must be the one that runs.
        _standIns.Write("true", "echo stand-in");

        var result = await _runner.RunAsync(_standIns.Spec("true"), CancellationToken.None).DefaultTimeout();

        Assert.Equal("stand-in\n", result.StandardOutput);
    }

    [Fact]
    public async Task A_background_process_holding_the_output_open_does_not_hang_the_run()
    {
        var daemon = _standIns.File("daemon.pid");
        _standIns.Write("pg_ctl", $"sleep 300 &\necho $! > '{daemon}'\necho started");

        var result = await _runner.RunAsync(_standIns.Spec("pg_ctl"), CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.Exited, result.Outcome);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("started\n", result.StandardOutput);
        Assert.Contains("still open", result.Error);
        // A normal exit does not kill what the command deliberately left running (e.g. a daemon it started).
        Assert.False(StandIns.IsGone(await _standIns.ReadPidAsync("daemon.pid")));
    }

    [Fact]
    public async Task A_failing_output_callback_stops_streaming_but_not_the_capture()
    {
        _standIns.Write("app", "echo one\necho two >&2\necho three");
        var calls = 0;
        var spec = _standIns.Spec("app") with
        {
            OnOutput = (_, _) => { Interlocked.Increment(ref calls); throw new InvalidOperationException("sink is down"); },
        };

        var result = await _runner.RunAsync(spec, CancellationToken.None).DefaultTimeout();

        Assert.Equal(CommandOutcome.Exited, result.Outcome);
        Assert.Equal("one\nthree\n", result.StandardOutput);
        Assert.Equal("two\n", result.StandardError);
        Assert.Equal(1, calls);
        Assert.Contains("sink is down", result.Error);
    }

    [Fact]
    public async Task Logs_name_the_command_and_count_arguments_but_never_show_their_values()
    {
        _standIns.Write("pg_dump", "exit 0");
        var logger = new RecordingLogger<CommandRunner>();
        var runner = StandIns.Runner(logger);
        var spec = _standIns.Spec("pg_dump", "--dbname=postgres://admin:hunter2@db/app", "--file", "out.sql");
        spec = spec with { Environment = new Dictionary<string, string?>(spec.Environment!) { ["PGPASSWORD"] = "s3cr3t-env" } };

        await runner.RunAsync(spec, CancellationToken.None).DefaultTimeout();

        var entries = logger.Entries;
        var all = string.Join("\n", entries.Select(e => e.Message + " " + string.Join(",", e.Values.Select(v => $"{v.Key}={v.Value}"))));
        Assert.DoesNotContain("hunter2", all);
        Assert.DoesNotContain("s3cr3t-env", all);
        Assert.DoesNotContain("out.sql", all);
        var started = Assert.Single(entries, e => e.Values.Any(v => v.Key == "ArgumentCount") && e.Message.StartsWith("Started", StringComparison.Ordinal));
        Assert.Contains(started.Values, v => v is { Key: "Command", Value: "pg_dump" });
        Assert.Contains(started.Values, v => v is { Key: "ArgumentCount", Value: 3 });
        var finished = Assert.Single(entries, e => e.Values.Any(v => v.Key == "Outcome"));
        Assert.Contains(finished.Values, v => v is { Key: "Outcome", Value: CommandOutcome.Exited });
        Assert.Contains(finished.Values, v => v is { Key: "ExitCode", Value: 0 });
        Assert.Contains(finished.Values, v => v.Key == "DurationMs");
        Assert.Contains(finished.Values, v => v.Key == "{OriginalFormat}");
    }

    [Fact]
    public async Task Invalid_specs_fail_to_start_instead_of_throwing()
    {
        var results = await Task.WhenAll(
            _runner.RunAsync(new CommandSpec("", []), CancellationToken.None),
            _runner.RunAsync(_standIns.Spec("app") with { Timeout = TimeSpan.FromSeconds(-5) }, CancellationToken.None),
            _runner.RunAsync(_standIns.Spec("app", "a\0b"), CancellationToken.None),
            _runner.RunAsync(_standIns.Spec("app") with { WorkingDirectory = _standIns.File("missing-dir") }, CancellationToken.None)).DefaultTimeout();

        Assert.All(results, r => Assert.Equal(CommandOutcome.FailedToStart, r.Outcome));
        Assert.All(results, r => Assert.False(string.IsNullOrEmpty(r.Error)));
    }

    private static Func<OutputChunk, CancellationToken, ValueTask> CancelOn(string text, CancellationTokenSource cts) =>
        (chunk, token) =>
        {
            if (chunk.Text.Contains(text, StringComparison.Ordinal)) _ = cts.CancelAsync();
            return ValueTask.CompletedTask;
        };
}
