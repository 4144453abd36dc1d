using System.Net;
using System.Net.Sockets;
using Fleet.Testing;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Fleet.Cli.Tests;

/// <summary>Failures are one line on stderr, never a stack trace, with exit 1 (runtime) or 2 (usage).</summary>
public sealed class FailureTests
{
    private readonly CliRunner _cli = new();

    private static void AssertOneCleanLine(CliRun run, params string[] expectedFragments)
    {
        Assert.Equal("", run.Stdout);
        var line = Assert.Single(run.StderrLines);
        Assert.StartsWith("fleetctl: ", line);
        foreach (var fragment in expectedFragments) Assert.Contains(fragment, line);
        Assert.DoesNotContain("   at ", run.Stderr);
        Assert.DoesNotContain("Exception", run.Stderr);
    }

    [Fact]
    public async Task Unreachable_coordinator_is_one_line_with_the_url_and_exit_1()
    {
        var url = $"http://127.0.0.1:{FreePort.Next()}";
        var run = await _cli.RunAsync("--coordinator", url, "agents", "list");

        Assert.Equal(1, run.ExitCode);
        AssertOneCleanLine(run, $"cannot reach the coordinator at {url} (connection refused)");
    }

    [Fact]
    public async Task Unreachable_default_coordinator_names_the_default_url()
    {
        // Nothing in the test environment listens on 127.0.0.1:5081 (the harness keeps that port free),
        // but send it through a free port anyway so the test never depends on it.
        var port = FreePort.Next();
        _cli.ChannelFactory = _ => Grpc.Net.Client.GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
        var run = await _cli.RunAsync("agents", "show", "x");

        Assert.Equal(1, run.ExitCode);
        AssertOneCleanLine(run, "cannot reach the coordinator at http://127.0.0.1:5081 (connection refused)");
    }

    [Fact]
    public async Task Unresolvable_host_is_reported_as_such()
    {
        var run = await _cli.RunAsync("--coordinator", "http://no-such-host.invalid:5081", "agents", "list");

        Assert.Equal(1, run.ExitCode);
        AssertOneCleanLine(run, "cannot reach the coordinator at http://no-such-host.invalid:5081", "no-such-host.invalid");
    }

    [Fact]
    public async Task A_silent_server_times_out_with_the_deadline_in_the_message()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start(); // accepts connections in the backlog, never answers
        var url = $"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}";

        var run = await _cli.RunAsync("--coordinator", url, "--timeout", "300ms", "agents", "list");

        Assert.Equal(1, run.ExitCode);
        AssertOneCleanLine(run, $"cannot reach the coordinator at {url} (no answer within 300ms)");
    }

    [Fact]
    public async Task An_http1_only_endpoint_gives_a_readable_handshake_message()
    {
        await using var http1 = await FakeCoordinator.StartAsync([], HttpProtocols.Http1);
        var run = await _cli.RunAsync("--coordinator", http1.Url, "agents", "list");

        Assert.Equal(1, run.ExitCode);
        AssertOneCleanLine(run, $"cannot reach the coordinator at {http1.Url} (HTTP/2 handshake failed");
    }

    [Fact]
    public async Task An_http2_server_that_is_not_grpc_is_reported_as_such()
    {
        await using var notGrpc = await FakeCoordinator.StartAsync([], grpc: false);
        var run = await _cli.RunAsync("--coordinator", notGrpc.Url, "agents", "list");

        Assert.Equal(1, run.ExitCode);
        AssertOneCleanLine(run, $"cannot reach the coordinator at {notGrpc.Url} (the server there does not speak gRPC: HTTP status code: 404)");
    }

    [Fact]
    public async Task Https_to_a_plaintext_endpoint_gives_a_readable_tls_message()
    {
        await using var plaintext = await FakeCoordinator.StartAsync([]);
        var url = $"https://127.0.0.1:{plaintext.Address.Port}";
        var run = await _cli.RunAsync("--coordinator", url, "agents", "list");

        Assert.Equal(1, run.ExitCode);
        AssertOneCleanLine(run, $"cannot reach the coordinator at {url} (TLS handshake failed");
    }

    [Theory]
    [InlineData("not a url")]
    [InlineData("127.0.0.1:5081")]
    [InlineData("ftp://127.0.0.1:5081")]
    [InlineData("/relative")]
    public async Task Invalid_coordinator_is_a_usage_error_naming_the_option_and_value(string value)
    {
        var run = await _cli.RunAsync("--coordinator", value, "agents", "list");

        Assert.Equal(2, run.ExitCode);
        AssertOneCleanLine(run, "--coordinator", $"'{value}'");
    }

    [Fact]
    public async Task Invalid_FLEET_COORDINATOR_is_a_usage_error_naming_the_variable_and_option()
    {
        _cli.Environment["FLEET_COORDINATOR"] = "localhost";
        var run = await _cli.RunAsync("agents", "list");

        Assert.Equal(2, run.ExitCode);
        AssertOneCleanLine(run, "FLEET_COORDINATOR", "'localhost'", "--coordinator");
    }

    [Theory]
    [InlineData("--timeout", "0")]
    [InlineData("--timeout", "soon")]
    [InlineData("--user", "")]
    [InlineData("--user", "bjørn")]
    public async Task Invalid_global_option_values_are_usage_errors(string option, string value)
    {
        var run = await _cli.RunAsync(option, value, "agents", "list");

        Assert.Equal(2, run.ExitCode);
        AssertOneCleanLine(run, option);
    }

    [Fact]
    public async Task Invalid_status_filter_is_a_usage_error()
    {
        var run = await _cli.RunAsync("agents", "list", "--status", "sleeping");

        Assert.Equal(2, run.ExitCode);
        AssertOneCleanLine(run, "--status", "'sleeping'", "online or offline");
    }

    [Fact]
    public async Task Unknown_command_is_a_usage_error_with_a_pointer_to_help()
    {
        var run = await _cli.RunAsync("agents", "frobnicate");

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(["fleetctl: Unrecognized command or argument 'frobnicate'", "Run 'fleetctl agents --help' for usage."], run.StderrLines);
    }

    [Fact]
    public async Task Missing_agent_id_is_a_usage_error()
    {
        var run = await _cli.RunAsync("agents", "show");

        Assert.Equal(2, run.ExitCode);
        Assert.Contains("Run 'fleetctl agents show --help' for usage.", run.StderrLines);
    }

    [Fact]
    public async Task Unexpected_exceptions_are_one_line_and_exit_1()
    {
        _cli.ChannelFactory = _ => throw new InvalidOperationException("the flux capacitor is\nmisaligned");
        var run = await _cli.RunAsync("agents", "list");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.Equal("fleetctl: unexpected error: InvalidOperationException: the flux capacitor is misaligned", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Cancellation_exits_130_without_a_stack_trace()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();

        var exit = await Cli.RunAsync(["--coordinator", $"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}", "agents", "list"],
            stdout, stderr, ct: cts.Token).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(130, exit);
        Assert.Equal("fleetctl: cancelled", stderr.ToString().Trim());
    }

    [Fact]
    public async Task Help_goes_to_stdout_and_exits_0()
    {
        var run = await _cli.RunAsync("agents", "list", "--help");

        Assert.Equal(0, run.ExitCode);
        Assert.Contains("--status", run.Stdout);
        Assert.Contains("--coordinator", run.Stdout);
        Assert.Contains("FLEET_COORDINATOR", run.Stdout);
    }
}
