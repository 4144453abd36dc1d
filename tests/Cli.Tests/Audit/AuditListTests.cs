using System.Text.Json;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Tests.Audit;

/// <summary>fleetctl audit list against a real loopback gRPC server.</summary>
public sealed class AuditListTests : IAsyncLifetime
{
    private FakeAuditCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync() => _coordinator = await FakeAuditCoordinator.StartAsync(AuditTrail.Events());

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    private ListAuditEventsRequest[] ListRequests() =>
        _coordinator.Service.Calls.Where(c => c.Method == "ListAuditEvents").Select(c => c.Request!).ToArray();

    [Fact]
    public async Task List_prints_a_newest_first_table_with_utc_seconds_and_a_dash_for_unsealed_rows()
    {
        var run = await Run("audit", "list");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        var lines = run.StdoutLines;
        Assert.Equal(6, lines.Length);
        Assert.Equal(["TIME", "SEQ", "ACTOR", "ACTION", "TARGET", "OUTCOME"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Matches(@"^2025-03-14T15:09:16Z\s+-\s+alice\s+agent\.removed\s+agent:db-01\s+ok$", lines[1]);
        Assert.Matches(@"^2025-03-14T13:39:26Z\s+4\s+nightly disk check\s+task\.run\s+task:disk-usage, all hosts\s+error: partial 2 of 3 hosts", lines[2]);
        Assert.Matches(@"^2025-03-14T13:09:26Z\s+3\s+bob\s+task\.run\s+task:restart-service\s+error: exit 1 Job for nginx\.service failed$", lines[3]);
        Assert.StartsWith("2025-03-13T09:09:26Z  2 ", lines[4]);
        Assert.StartsWith("2025-03-11T15:09:26Z  1 ", lines[5]);

        var request = Assert.Single(ListRequests());
        Assert.True(request.NewestFirst);
        Assert.Equal(50, request.PageSize);
        Assert.Null(request.From);
        Assert.Null(request.To);
    }

    [Fact]
    public async Task List_filters_reach_the_server()
    {
        var run = await Run("audit", "list", "--actor", "alice", "--action", "agent.*", "--host", "a-db1", "--since", "24h",
            "--to", "2025-03-14T15:09:20Z", "--q", "db-01", "--limit", "7");

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = Assert.Single(ListRequests());
        Assert.Equal("alice", request.Actor);
        Assert.Equal("agent.*", request.Action);
        Assert.Equal("a-db1", request.Host);
        Assert.Equal("db-01", request.Q);
        Assert.Equal(Timestamp.FromDateTimeOffset(TestFleet.Now.AddHours(-24)), request.From);
        Assert.Equal(Timestamp.FromDateTimeOffset(new DateTimeOffset(2025, 3, 14, 15, 9, 20, TimeSpan.Zero)), request.To);
        Assert.Equal(7, request.PageSize);
        Assert.True(request.NewestFirst);
        Assert.Contains("agent:db-01", Assert.Single(run.StdoutLines.Skip(1)));
    }

    [Theory]
    [InlineData("2025-03-14T10:00:00+02:00", "2025-03-14T08:00:00Z")]
    [InlineData("2025-03-14T10:00:00Z", "2025-03-14T10:00:00Z")]
    [InlineData("2025-03-14T10:00", "2025-03-14T10:00:00Z")]
    [InlineData("2025-03-14", "2025-03-14T00:00:00Z")]
    [InlineData("2025-03-14T10:00:00.250Z", "2025-03-14T10:00:00.250Z")]
    public async Task List_from_is_sent_as_utc_and_a_time_without_offset_means_utc(string from, string expected)
    {
        var run = await Run("audit", "list", "--from", from);

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(Timestamp.FromDateTimeOffset(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture)), Assert.Single(ListRequests()).From);
    }

    [Fact]
    public async Task List_follows_next_page_token_until_the_limit()
    {
        _coordinator.Service.MaxPageSize = 2;

        var run = await Run("audit", "list", "--limit", "3", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal([5L, 4L, 3L], run.StdoutLines.Select(l => AuditEvent.Parser.ParseJson(l).Id));
        var requests = ListRequests();
        Assert.Equal(["", "2"], requests.Select(r => r.PageToken));
        // The second page asks only for what is still missing.
        Assert.Equal([3, 1], requests.Select(r => r.PageSize));
    }

    [Fact]
    public async Task List_stops_when_the_server_has_no_more_pages()
    {
        _coordinator.Service.MaxPageSize = 2;

        var run = await Run("audit", "list");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(6, run.StdoutLines.Length);
        Assert.Equal(["", "2", "4"], ListRequests().Select(r => r.PageToken));
    }

    [Fact]
    public async Task List_json_prints_one_event_per_line_that_parses_back_to_the_served_event()
    {
        var run = await Run("audit", "list", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        var parsed = run.StdoutLines.Select(l => AuditEvent.Parser.ParseJson(l)).ToArray();
        Assert.Equal(AuditTrail.Events().Reverse(), parsed);
        // The REST API's field names, and default values included so scripts can rely on every field.
        using var newest = JsonDocument.Parse(run.StdoutLines[0]);
        Assert.Equal("user", newest.RootElement.GetProperty("actorKind").GetString());
        Assert.Equal("0", newest.RootElement.GetProperty("seq").GetString());
        Assert.Equal("", newest.RootElement.GetProperty("hash").GetString());
        Assert.Equal("2025-03-14T15:09:16Z", newest.RootElement.GetProperty("time").GetString());
    }

    [Fact]
    public async Task List_with_no_matching_events_says_so_on_stderr_and_json_prints_nothing()
    {
        var run = await Run("audit", "list", "--actor", "nobody");
        var json = await Run("audit", "list", "--actor", "nobody", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stdout);
        Assert.Equal("No audit events.", Assert.Single(run.StderrLines));
        Assert.True(json.ExitCode == 0, json.ToString());
        Assert.Equal("", json.Stdout);
        Assert.Equal("", json.Stderr);
    }

    [Fact]
    public async Task List_calls_carry_the_user_and_the_timeout_deadline()
    {
        var before = DateTime.UtcNow;
        var run = await Run("--timeout", "3s", "audit", "list", "--user", "alice");

        Assert.True(run.ExitCode == 0, run.ToString());
        var call = Assert.Single(_coordinator.Service.Calls);
        Assert.Equal("alice", call.User);
        Assert.InRange(call.Deadline, before.AddSeconds(2), DateTime.UtcNow.AddSeconds(4));
    }

    [Fact]
    public async Task List_ls_is_an_alias()
    {
        var run = await Run("audit", "ls", "--limit", "1");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(2, run.StdoutLines.Length);
    }
}
