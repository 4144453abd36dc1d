using System.Text.Json;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Cli.Tests.Logs;

/// <summary>fleetctl logs against a real loopback gRPC server.</summary>
public sealed class LogsCommandTests : IAsyncLifetime
{
    private FakeLogsCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync()
    {
        _coordinator = await FakeLogsCoordinator.StartAsync();
        // Newest first, as the coordinator answers.
        for (var i = 5; i >= 1; i--)
            _coordinator.Logs.Stored.Add(Entry(i, $"line {i}", i == 4 ? "error" : "info"));
    }

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private static LogRecord Entry(long id, string message, string severity = "info") => new()
    {
        Id = id, AgentId = "a-web1", Hostname = "web-1", Source = "app-errors", Path = "/var/log/app/error.log",
        Time = Timestamp.FromDateTimeOffset(TestFleet.Now.AddMinutes(-10 + id)), Severity = severity, Message = message,
    };

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    [Fact]
    public async Task Logs_tail_prints_the_newest_entries_oldest_first_as_lines()
    {
        var run = await Run("logs", "--tail", "2");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(
            [
                "2025-03-14T15:03:26.000Z web-1 app-errors ERROR line 4",
                "2025-03-14T15:04:26.000Z web-1 app-errors INFO line 5",
            ],
            run.StdoutLines);
        var request = Assert.Single(_coordinator.Logs.Searches);
        Assert.Equal(2, request.Limit);
        Assert.Equal(TestFleet.Now.AddHours(-24), request.From.ToDateTimeOffset());
        Assert.Equal(TestFleet.Now, request.To.ToDateTimeOffset());
        Assert.False(request.OldestFirst);
    }

    [Fact]
    public async Task Logs_sends_the_filters_and_pages_until_the_tail_is_complete()
    {
        var run = await Run("logs", "--host", "web-1", "--source", "error.log", "--severity", "ERROR", "--q", "\"Failed password\"", "--since", "2h", "--until", "1h", "--tail", "100");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(5, run.StdoutLines.Length);
        var request = _coordinator.Logs.Searches.First();
        Assert.Equal(("web-1", "error.log", "error", "\"Failed password\""), (request.Host, request.Source, request.Severity, request.Q));
        Assert.Equal(TestFleet.Now.AddHours(-2), request.From.ToDateTimeOffset());
        Assert.Equal(TestFleet.Now.AddHours(-1), request.To.ToDateTimeOffset());
    }

    [Fact]
    public async Task Logs_json_prints_one_object_per_entry()
    {
        var run = await Run("logs", "--tail", "3", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(["line 3", "line 4", "line 5"], run.StdoutLines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("message").GetString()));
    }

    [Fact]
    public async Task Logs_follow_prints_the_tail_then_new_entries_once()
    {
        var running = Run("logs", "--follow", "--tail", "1", "--severity", "error");
        await _coordinator.Logs.FollowStarted.Task.DefaultTimeout();
        await _coordinator.Logs.Live.Writer.WriteAsync(Entry(5, "line 5")); // also in the tail: printed once
        await _coordinator.Logs.Live.Writer.WriteAsync(Entry(6, "line 6", "error"));
        _coordinator.Logs.Live.Writer.Complete();
        var run = await running;

        Assert.Equal(1, run.ExitCode);
        Assert.Equal(["line 5", "line 6"], run.StdoutLines.Select(l => l.Split(' ', 5)[4]));
        Assert.Contains("the coordinator ended the follow", run.Stderr);
        Assert.Equal("error", Assert.Single(_coordinator.Logs.Follows).Severity);
    }

    [Fact]
    public async Task Logs_follow_ends_cleanly_on_ctrl_c()
    {
        using var cts = new CancellationTokenSource();
        var running = _cli.RunAsync(["--coordinator", _coordinator.Url, "logs", "--follow"], cts.Token);
        await _coordinator.Logs.FollowStarted.Task.DefaultTimeout();
        await Eventually.UntilAsync(() => !_coordinator.Logs.Searches.IsEmpty, "the tail search");
        cts.Cancel();
        var run = await running;

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        Assert.Equal(10, _coordinator.Logs.Searches.First().Limit); // the default tail with --follow
    }

    [Theory]
    [InlineData("--severity", "loud", "--severity")]
    [InlineData("--tail", "0", "--tail")]
    [InlineData("--since", "yesterday", "--since")]
    [InlineData("--until", "soon", "--until")]
    public async Task Logs_rejects_bad_options_as_usage_errors(string option, string value, string named)
    {
        var run = await Run("logs", option, value);

        Assert.Equal(2, run.ExitCode);
        Assert.Contains(named, run.Stderr);
        Assert.Empty(_coordinator.Logs.Searches);
    }

    [Fact]
    public async Task Logs_reports_the_coordinators_refusal_in_one_line()
    {
        _coordinator.Logs.Failure = new RpcException(new Status(StatusCode.InvalidArgument, "q: 1001 characters; at most 1000"));

        var run = await Run("logs", "--q", "x");

        Assert.Equal(1, run.ExitCode);
        Assert.Contains("q: 1001 characters", Assert.Single(run.StderrLines));
    }
}
