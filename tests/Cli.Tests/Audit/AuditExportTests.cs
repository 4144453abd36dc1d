using System.Globalization;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Cli.Tests.Audit;

/// <summary>fleetctl audit export: a server stream written as JSON Lines or RFC 4180 CSV, to stdout or atomically to a file.</summary>
public sealed class AuditExportTests : IAsyncLifetime
{
    private static readonly string[] Header =
        ["seq", "id", "time", "actor_kind", "actor", "remote_address", "action", "target", "host", "outcome", "parameters_json", "hash"];

    private FakeAuditCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();
    private readonly TempDirectory _directory = new();

    public async Task InitializeAsync() => _coordinator = await FakeAuditCoordinator.StartAsync(AuditTrail.Events());

    public async Task DisposeAsync()
    {
        await _coordinator.DisposeAsync();
        _directory.Dispose();
    }

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    private ListAuditEventsRequest ExportRequest() => Assert.Single(_coordinator.Service.Calls, c => c.Method == "ExportAuditEvents").Request!;

    private static string JsonTime(Timestamp time) => JsonFormatter.Default.Format(time).Trim('"');

    private static string[] Expected(AuditEvent e) =>
    [
        e.Seq.ToString(CultureInfo.InvariantCulture), e.Id.ToString(CultureInfo.InvariantCulture), JsonTime(e.Time), e.ActorKind, e.Actor,
        e.RemoteAddress, e.Action, e.Target, e.Host, e.Outcome, e.ParametersJson, e.Hash,
    ];

    [Fact]
    public async Task Export_csv_round_trips_through_an_rfc4180_reader_including_commas_quotes_and_newlines()
    {
        var run = await Run("audit", "export", "--since", "30d", "--format", "csv");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        var records = Rfc4180.Parse(run.Stdout);
        Assert.Equal(Header, records[0]);
        var served = AuditTrail.Events();
        Assert.Equal(served.Length, records.Count - 1);
        for (var i = 0; i < served.Length; i++)
        {
            // Oldest first, every field exactly as served; times as in the JSON mapping (fractions of 3, 6 or 9 digits).
            Assert.Equal(Expected(served[i]), records[i + 1]);
        }
        Assert.Contains("2025-03-14T13:39:26.000000001Z", run.Stdout);
        Assert.Contains("2025-03-13T09:09:26.500Z", run.Stdout);
        Assert.Contains("\"{\"\"unit\"\":\"\"nginx \\\"\"main\\\"\"\"\"}\"", run.Stdout);
        Assert.StartsWith("seq,id,time,actor_kind,actor,remote_address,action,target,host,outcome,parameters_json,hash\r\n", run.Stdout);
    }

    [Fact]
    public async Task Export_defaults_to_json_lines_oldest_first()
    {
        var run = await Run("audit", "export", "--since", "30d");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(AuditTrail.Events(), run.StdoutLines.Select(l => AuditEvent.Parser.ParseJson(l)));
    }

    [Fact]
    public async Task Export_sends_the_filters_with_since_measured_from_the_clock()
    {
        var run = await Run("audit", "export", "--since", "1d12h", "--actor", "bob", "--action", "task.run", "--host", "a-web2", "--q", "nginx", "--format", "csv");

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = ExportRequest();
        Assert.Equal(Timestamp.FromDateTimeOffset(TestFleet.Now.AddHours(-36)), request.From);
        Assert.Null(request.To);
        Assert.Equal(("bob", "task.run", "a-web2", "nginx"), (request.Actor, request.Action, request.Host, request.Q));
        Assert.False(request.NewestFirst);
        Assert.Equal("3", Rfc4180.Parse(run.Stdout).Skip(1).Single()[1]);
    }

    [Fact]
    public async Task Export_with_no_matching_events_writes_only_the_csv_header()
    {
        var run = await Run("audit", "export", "--from", "2030-01-01", "--format", "csv");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal([Header], Rfc4180.Parse(run.Stdout));
    }

    [Fact]
    public async Task Export_has_no_deadline_even_with_a_timeout_because_the_interceptor_limits_only_unary_calls()
    {
        var run = await Run("--timeout", "1s", "audit", "export", "--since", "30d");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(DateTime.MaxValue, Assert.Single(_coordinator.Service.Calls).Deadline);
        Assert.Equal("test-operator", Assert.Single(_coordinator.Service.Calls).User);
    }

    [Fact]
    public async Task Export_to_a_file_replaces_it_only_once_complete_and_reports_the_count()
    {
        var target = _directory.Combine("audit.csv");
        await File.WriteAllTextAsync(target, "previous export");
        string? targetMidway = null;
        string[]? filesMidway = null;
        _coordinator.Service.AfterRowsCount = 3;
        _coordinator.Service.AfterRows = () =>
        {
            targetMidway = File.ReadAllText(target);
            filesMidway = Directory.GetFiles(_directory.Path);
        };

        var run = await Run("audit", "export", "--since", "30d", "--format", "csv", "--output", target);

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stdout);
        Assert.Equal($"exported 5 rows to {target}", Assert.Single(run.StderrLines));
        // While rows were still arriving the target was untouched and the rows went to a temporary file beside it.
        Assert.Equal("previous export", targetMidway);
        Assert.Equal(2, filesMidway!.Length);
        // Afterwards: the complete export, and nothing else left in the directory.
        Assert.Equal([target], Directory.GetFiles(_directory.Path));
        var records = Rfc4180.Parse(await File.ReadAllTextAsync(target));
        Assert.Equal(AuditTrail.Events().Select(Expected), records.Skip(1));
    }

    [Fact]
    public async Task Export_failing_midway_keeps_the_old_file_and_leaves_no_temporary_file()
    {
        var target = _directory.Combine("audit.jsonl");
        await File.WriteAllTextAsync(target, "previous export");
        _coordinator.Service.AfterRowsCount = 2;
        _coordinator.Service.AfterRows = () => throw new RpcException(new Status(StatusCode.Aborted, "database went away"));

        var run = await Run("audit", "export", "--since", "30d", "--output", target);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("fleetctl: aborted: database went away", Assert.Single(run.StderrLines));
        Assert.Equal("previous export", await File.ReadAllTextAsync(target));
        Assert.Equal([target], Directory.GetFiles(_directory.Path));
    }

    [Fact]
    public async Task Export_interrupted_midway_exits_130_and_leaves_the_old_file_alone()
    {
        var target = _directory.Combine("audit.csv");
        await File.WriteAllTextAsync(target, "previous export");
        using var interrupt = new CancellationTokenSource();
        _coordinator.Service.AfterRowsCount = 2;
        _coordinator.Service.AfterRows = interrupt.Cancel;
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();

        var exit = await Cli.RunAsync(["--coordinator", _coordinator.Url, "audit", "export", "--from", "2025-01-01", "--format", "csv", "--output", target],
            stdout, stderr, ct: interrupt.Token).DefaultTimeout();

        Assert.Equal(130, exit);
        Assert.Equal("fleetctl: cancelled", stderr.ToString().Trim());
        Assert.Equal("previous export", await File.ReadAllTextAsync(target));
        Assert.Equal([target], Directory.GetFiles(_directory.Path));
    }

    [Fact]
    public async Task Export_to_a_file_reports_progress_every_10000_rows()
    {
        await using var big = await FakeAuditCoordinator.StartAsync(AuditTrail.Many(25_000));
        var target = _directory.Combine("big.jsonl");

        var run = await _cli.RunAsync("--coordinator", big.Url, "audit", "export", "--since", "1d", "--output", target);

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(["exported 10000 rows…", "exported 20000 rows…", $"exported 25000 rows to {target}"], run.StderrLines);
        var lines = await File.ReadAllLinesAsync(target);
        Assert.Equal(25_000, lines.Length);
        Assert.Equal(25_000, AuditEvent.Parser.ParseJson(lines[^1]).Id);
    }

    [Fact]
    public async Task Export_to_stdout_reports_no_progress()
    {
        await using var big = await FakeAuditCoordinator.StartAsync(AuditTrail.Many(10_001));

        var run = await _cli.RunAsync("--coordinator", big.Url, "audit", "export", "--since", "1d", "--format", "csv");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
        Assert.Equal(10_002, Rfc4180.Parse(run.Stdout).Count);
    }

    [Fact]
    public async Task Export_into_a_missing_directory_fails_naming_the_file()
    {
        var target = _directory.Combine("no-such-dir", "audit.csv");

        var run = await Run("audit", "export", "--since", "30d", "--output", target);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.StartsWith($"fleetctl: cannot write {target}: ", Assert.Single(run.StderrLines));
        Assert.DoesNotContain(_coordinator.Service.Calls, c => c.Method == "ExportAuditEvents");
    }
}
