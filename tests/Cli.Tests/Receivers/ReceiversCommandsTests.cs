using Fleet.Protocol.V1;
using Fleet.Testing;

namespace Fleet.Cli.Tests.Receivers;

public sealed class ReceiversCommandsTests : IAsyncLifetime
{
    private readonly CliRunner _cli = new();
    private FakeReceiversCoordinator _coordinator = null!;

    public async Task InitializeAsync()
    {
        _coordinator = await FakeReceiversCoordinator.StartAsync();
        _coordinator.Receivers.Configured.Add(new Receiver
        {
            Name = "ops-slack", Kind = "slack", Target = "https://hooks.slack.com", Channel = "#ops", SendResolved = true,
            Routes = { new ReceiverRoute { Index = 0 }, new ReceiverRoute { Index = 2, Matchers = { "host=~db-.*" }, Severities = { "critical" } } },
            Stats = new ReceiverStats
            {
                Sent = 12, Dead = 1, Pending = 2, Sending = 1, Silenced = 3, LastSentAt = FakeReceiversService.At(TestFleet.Now.AddMinutes(-7)),
                LastError = "HTTP 429 Too Many Requests: rate_limited", LastErrorNotificationId = 77,
            },
        });
        _coordinator.Receivers.Configured.Add(new Receiver
        {
            Name = "ops-mail", Kind = "email", Target = "smtp.example.test:587", To = { "oncall@example.test", "ops@example.test" },
            From = "fleet@example.test", Security = "starttls", Stats = new ReceiverStats(),
        });
    }

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    [Fact]
    public async Task Receivers_ListsATable_WithTargetCountsAndLastError_AndJsonLines()
    {
        var run = await Run("receivers");
        Assert.Equal(0, run.ExitCode);
        Assert.Equal(3, run.StdoutLines.Length);
        Assert.StartsWith("NAME", run.StdoutLines[0]);
        Assert.Contains("SENT/DEAD/PENDING", run.StdoutLines[0]);
        var slack = run.StdoutLines[1].Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(["ops-slack", "slack", "https://hooks.slack.com", "12/1/3", "7m ago", "HTTP 429 Too Many Requests: rate_limited"], slack);
        var mail = run.StdoutLines[2].Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(["ops-mail", "email", "smtp.example.test:587 (to oncall@example.test,ops@example.test)", "0/0/0", "never", "-"], mail);

        var json = await Run("receivers", "--json");
        Assert.Equal(0, json.ExitCode);
        Assert.Equal(2, json.StdoutLines.Length);
        var parsed = Receiver.Parser.ParseJson(json.StdoutLines[0]);
        Assert.Equal(("ops-slack", 12L), (parsed.Name, parsed.Stats.Sent));
    }

    [Fact]
    public async Task ReceiversShow_PrintsTheReceiver_ItsRoutesAndCounts()
    {
        var run = await Run("receivers", "show", "ops-slack");
        Assert.Equal(0, run.ExitCode);
        Assert.Equal(
        [
            "Name:          ops-slack",
            "Kind:          slack",
            "Target:        https://hooks.slack.com",
            "Channel:       #ops",
            "Send resolved: yes",
            "Notifications: 12 sent, 1 dead, 2 pending, 1 sending, 3 silenced",
            "Last sent:     2025-03-14 15:02:26Z (7m ago)",
            "Last error:    HTTP 429 Too Many Requests: rate_limited (notification 77)",
            "Routes (2):",
            "  route 0: every alert; every severity",
            "  route 2: host=~db-.*; critical",
        ], run.StdoutLines);
        var request = (GetReceiverRequest)Assert.Single(_coordinator.Receivers.Calls).Message;
        Assert.Equal("ops-slack", request.Name);

        var mail = await Run("receivers", "show", "ops-mail", "--json");
        Assert.Equal(0, mail.ExitCode);
        Assert.Equal(["oncall@example.test", "ops@example.test"], Receiver.Parser.ParseJson(mail.Stdout).To);
    }

    [Fact]
    public async Task ReceiversTest_Delivered_SaysToWhomAndHowFast_WithALongerDeadlineThanOtherCalls()
    {
        var run = await Run("receivers", "test", "ops-slack");
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("delivered to ops-slack in 42 ms", Assert.Single(run.StdoutLines));
        Assert.Empty(run.Stderr);
        var call = Assert.Single(_coordinator.Receivers.Calls);
        Assert.Equal("ops-slack", ((TestReceiverRequest)call.Message).Name);
        Assert.Equal("test-operator", call.User);
        // 30 s unless --timeout: the coordinator's own send timeout (15 s) reports a slow receiver first.
        Assert.InRange(call.Deadline - DateTime.UtcNow, TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(31));

        var explicitTimeout = await Run("--timeout", "3s", "receivers", "test", "ops-slack");
        Assert.Equal(0, explicitTimeout.ExitCode);
        Assert.InRange(_coordinator.Receivers.Calls.Last().Deadline - DateTime.UtcNow, TimeSpan.Zero, TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task ReceiversTest_NotDelivered_PrintsTheError_AndExitsOne()
    {
        _coordinator.Receivers.Outcomes["ops-slack"] = new TestReceiverResponse
        {
            Name = "ops-slack", Kind = "slack", Target = "https://hooks.slack.com", Delivered = false, ElapsedMs = 123,
            Error = "HTTP 429 Too Many Requests: rate_limited", RetryAfter = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(30)),
        };
        var run = await Run("receivers", "test", "ops-slack");
        Assert.Equal(1, run.ExitCode);
        Assert.Empty(run.Stdout);
        Assert.Equal("fleetctl: not delivered to ops-slack (slack https://hooks.slack.com) after 123 ms: HTTP 429 Too Many Requests: rate_limited (the receiver asks to retry after 30s)",
            Assert.Single(run.StderrLines));

        var json = await Run("receivers", "test", "ops-slack", "--json");
        Assert.Equal(1, json.ExitCode);
        Assert.False(TestReceiverResponse.Parser.ParseJson(json.Stdout).Delivered);
    }

    [Fact]
    public async Task UnknownReceiver_FailsWithTheCoordinatorsMessage_AndAMissingName_IsAUsageError()
    {
        var run = await Run("receivers", "test", "pager");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("receiver 'pager' is not configured (known: ops-slack, ops-mail)", run.Stderr);

        var show = await Run("receivers", "show", "pager");
        Assert.Equal(1, show.ExitCode);
        Assert.Contains("'pager'", show.Stderr);

        var usage = await _cli.RunAsync(["--coordinator", $"http://127.0.0.1:{FreePort.Next()}", "receivers", "test"]);
        Assert.Equal(2, usage.ExitCode);
        Assert.Contains("Required argument missing for command: 'test'", usage.Stderr);
    }
}
