using System.Text.Json;
using Fleet.Protocol.V1;

namespace Fleet.Cli.Tests;

/// <summary>fleetctl agents … against a real loopback gRPC server (a fresh one per test).</summary>
public sealed class AgentsCommandsTests : IAsyncLifetime
{
    private FakeCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync() => _coordinator = await FakeCoordinator.StartAsync(TestFleet.Agents());

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    [Fact]
    public async Task List_prints_a_table_sorted_by_hostname()
    {
        var run = await Run("agents", "list");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        var lines = run.StdoutLines;
        Assert.Equal(4, lines.Length);
        Assert.Equal(["ID", "HOSTNAME", "STATUS", "VERSION", "OS", "LAST", "SEEN", "TAGS"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        // Case-insensitive hostname order: db-01, Web-01, web-02.
        Assert.StartsWith("a-db1 ", lines[1]);
        Assert.StartsWith("a-web1 ", lines[2]);
        Assert.StartsWith("a-web2 ", lines[3]);
        Assert.Contains("db-01", lines[1]);
        Assert.Contains(" offline ", lines[1]);
        Assert.Contains("Web-01", lines[2]);
        Assert.Contains(" online ", lines[2]);
        Assert.Contains("web-02", lines[3]);
        Assert.Contains(" online ", lines[3]);
        Assert.Contains(" 5h ago ", lines[1]);
        Assert.Contains(" 12m ago ", lines[2]);
        Assert.Contains(" 4s ago ", lines[3]);
        Assert.EndsWith(" env=prod,role=web", lines[3]);
        Assert.EndsWith(" -", lines[2]); // no tags

        // Columns are aligned: every row has HOSTNAME where the header has it.
        var hostnameColumn = lines[0].IndexOf("HOSTNAME", StringComparison.Ordinal);
        Assert.All(lines.Skip(1), line => Assert.NotEqual(' ', line[hostnameColumn]));
        Assert.All(lines.Skip(1), line => Assert.Equal(' ', line[hostnameColumn - 1]));
    }

    [Fact]
    public async Task List_status_filter_is_sent_and_applied()
    {
        var run = await Run("agents", "list", "--status", "offline");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(2, run.StdoutLines.Length);
        Assert.Contains("db-01", run.StdoutLines[1]);
        var call = Assert.Single(_coordinator.Service.Calls);
        Assert.Equal(AgentStatus.Offline, call.ListRequest!.Status);
    }

    [Fact]
    public async Task List_with_no_matching_agents_says_so_on_stderr()
    {
        await using var empty = await FakeCoordinator.StartAsync([]);
        var run = await _cli.RunAsync("--coordinator", empty.Url, "agents", "list", "--status", "online");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stdout);
        Assert.Equal("No online agents.", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task List_json_is_an_agents_object_with_rest_field_names()
    {
        var run = await Run("agents", "list", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var json = JsonDocument.Parse(run.Stdout);
        var agents = json.RootElement.GetProperty("agents");
        Assert.Equal(["a-db1", "a-web1", "a-web2"], agents.EnumerateArray().Select(a => a.GetProperty("id").GetString()!));
        var web2 = agents[2];
        Assert.Equal("web-02", web2.GetProperty("hostname").GetString());
        Assert.Equal("1.4.0", web2.GetProperty("agentVersion").GetString());
        Assert.Equal("AGENT_STATUS_ONLINE", web2.GetProperty("status").GetString());
        Assert.Equal("2025-03-14T15:09:22Z", web2.GetProperty("lastSeen").GetString());
        Assert.Equal("prod", web2.GetProperty("tags").GetProperty("env").GetString());
        // Defaults are written too, so scripts can rely on every field being present.
        Assert.Equal("", agents[1].GetProperty("machineId").GetString());
    }

    [Fact]
    public async Task List_json_with_no_agents_is_still_an_object_with_an_empty_array()
    {
        await using var empty = await FakeCoordinator.StartAsync([]);
        var run = await _cli.RunAsync("--coordinator", empty.Url, "agents", "list", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var json = JsonDocument.Parse(run.Stdout);
        Assert.Equal(0, json.RootElement.GetProperty("agents").GetArrayLength());
    }

    [Fact]
    public async Task Show_prints_details_and_tasks()
    {
        var run = await Run("agents", "show", "a-web2");

        Assert.True(run.ExitCode == 0, run.ToString());
        var text = run.Stdout;
        Assert.Matches(@"(?m)^ID:\s+a-web2$", text);
        Assert.Matches(@"(?m)^Hostname:\s+web-02$", text);
        Assert.Matches(@"(?m)^Status:\s+online$", text);
        Assert.Matches(@"(?m)^Replica:\s+coord-a$", text);
        Assert.Matches(@"(?m)^Kernel:\s+6\.8\.0$", text);
        Assert.Matches(@"(?m)^Last seen:\s+2025-03-14 15:09:22Z \(4s ago\)$", text);
        Assert.Matches(@"(?m)^Tags:\s+env=prod,role=web$", text);
        Assert.Contains("Tasks (2):", text);
        Assert.Contains("  restart-service [destructive] - Restart a systemd unit", text);
        Assert.Contains("    timeout: default 30s, max 5m", text);
        Assert.Contains("    parameter unit: string, required - The unit to restart", text);
        Assert.Contains("  disk-usage - Report disk usage per mount", text);
    }

    [Fact]
    public async Task Show_json_is_the_agent_object()
    {
        var run = await Run("agents", "show", "a-web2", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var json = JsonDocument.Parse(run.Stdout);
        Assert.Equal("a-web2", json.RootElement.GetProperty("id").GetString());
        Assert.Equal(["restart-service", "disk-usage"], json.RootElement.GetProperty("tasks").EnumerateArray().Select(t => t.GetProperty("name").GetString()!));
        Assert.Equal("30s", json.RootElement.GetProperty("tasks")[0].GetProperty("defaultTimeout").GetString());
    }

    [Fact]
    public async Task Show_of_a_missing_agent_reports_not_found()
    {
        var run = await Run("agents", "show", "nope");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.Equal("fleetctl: not found: agent 'nope' does not exist", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Other_error_statuses_are_readable_words()
    {
        var run = await Run("agents", "show", FakeAgentsService.ForbiddenId);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("fleetctl: permission denied: operator 'mallory' may not read agents", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Remove_prints_what_it_did()
    {
        var run = await Run("agents", "remove", "a-web2");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("Removed agent a-web2 and closed its live stream.", Assert.Single(run.StdoutLines));
        Assert.DoesNotContain("a-web2", _coordinator.Service.Ids);

        var offline = await Run("agents", "rm", "a-db1");
        Assert.Equal("Removed agent a-db1 (it was not connected).", Assert.Single(offline.StdoutLines));
    }

    [Fact]
    public async Task Remove_of_a_missing_agent_reports_not_found_and_exits_1()
    {
        var run = await Run("agents", "remove", "ghost");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Stdout);
        var line = Assert.Single(run.StderrLines);
        Assert.Equal("fleetctl: not found: agent 'ghost' does not exist", line);
    }

    [Fact]
    public async Task Every_call_carries_the_user_header_and_the_timeout_as_deadline()
    {
        var before = DateTime.UtcNow;
        await Run("agents", "list");
        await Run("agents", "show", "a-web1", "--timeout", "3s");
        await Run("agents", "remove", "a-web1");

        var calls = _coordinator.Service.Calls.ToArray();
        Assert.Equal(["ListAgents", "GetAgent", "RemoveAgent"], calls.Select(c => c.Method));
        Assert.All(calls, c => Assert.Equal("test-operator", c.User));
        Assert.InRange(calls[0].Deadline, before.AddSeconds(9), DateTime.UtcNow.AddSeconds(11));
        Assert.InRange(calls[1].Deadline, before.AddSeconds(2), DateTime.UtcNow.AddSeconds(4));
    }

    [Fact]
    public async Task User_option_overrides_the_environment_which_overrides_the_os_user()
    {
        _cli.Environment["FLEET_USER"] = "from-env";
        await Run("agents", "list", "--user", "alice");
        await Run("agents", "list");
        _cli.Environment.Remove("FLEET_USER");
        await Run("agents", "list");

        Assert.Equal(["alice", "from-env", "test-operator"], _coordinator.Service.Calls.Select(c => c.User));
    }

    [Fact]
    public async Task The_real_os_user_is_the_default()
    {
        var run = await Cli.RunAsync(["--coordinator", _coordinator.Url, "agents", "list"], new StringWriter(), new StringWriter());

        Assert.Equal(0, run);
        var expected = System.Environment.GetEnvironmentVariable("FLEET_USER") is { Length: > 0 } fromEnv ? fromEnv : System.Environment.UserName;
        Assert.Equal(expected, Assert.Single(_coordinator.Service.Calls).User);
    }

    [Fact]
    public async Task FLEET_COORDINATOR_is_used_when_no_option_is_given_and_the_option_wins()
    {
        _cli.Environment["FLEET_COORDINATOR"] = _coordinator.Url;
        var fromEnvironment = await _cli.RunAsync("agents", "list");
        Assert.True(fromEnvironment.ExitCode == 0, fromEnvironment.ToString());
        Assert.Contains("web-02", fromEnvironment.Stdout);

        _cli.Environment["FLEET_COORDINATOR"] = "http://127.0.0.1:1";
        var overridden = await Run("agents", "list");
        Assert.True(overridden.ExitCode == 0, overridden.ToString());
    }

    [Fact]
    public async Task The_injected_channel_factory_gets_the_coordinator_address()
    {
        var requested = new List<Uri>();
        _cli.ChannelFactory = uri =>
        {
            requested.Add(uri);
            return Grpc.Net.Client.GrpcChannel.ForAddress(_coordinator.Address);
        };
        var run = await _cli.RunAsync("--coordinator", "http://coordinator.example:5081", "agents", "list");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(new Uri("http://coordinator.example:5081"), Assert.Single(requested));
    }
}
