using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Cli.Tests;

/// <summary>A small fleet with fixed times, and a way to run fleetctl in-process against it.</summary>
public static class TestFleet
{
    public static readonly DateTimeOffset Now = new(2025, 3, 14, 15, 9, 26, TimeSpan.Zero);

    public static Agent[] Agents() =>
    [
        new Agent
        {
            Id = "a-web2", Hostname = "web-02", Os = "linux", Kernel = "6.8.0", AgentVersion = "1.4.0", ProtocolVersion = 1,
            Status = AgentStatus.Online, Replica = "coord-a", MachineId = "m-web2",
            FirstSeen = Timestamp.FromDateTimeOffset(Now.AddDays(-3)), LastSeen = Timestamp.FromDateTimeOffset(Now.AddSeconds(-4)),
            Tags = { ["role"] = "web", ["env"] = "prod" },
            Tasks =
            {
                new TaskDescriptor
                {
                    Name = "restart-service", Description = "Restart a systemd unit", Destructive = true,
                    DefaultTimeout = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(30)),
                    MaxTimeout = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromMinutes(5)),
                    Parameters =
                    {
                        new ParameterSchema { Name = "unit", Type = ParameterSchema.Types.Type.String, Required = true, Description = "The unit to restart" },
                    },
                },
                new TaskDescriptor { Name = "disk-usage", Description = "Report disk usage per mount" },
            },
        },
        new Agent
        {
            Id = "a-db1", Hostname = "db-01", Os = "linux", Kernel = "6.1.0", AgentVersion = "1.3.2", ProtocolVersion = 1,
            Status = AgentStatus.Offline,
            FirstSeen = Timestamp.FromDateTimeOffset(Now.AddDays(-10)), LastSeen = Timestamp.FromDateTimeOffset(Now.AddHours(-5)),
            Tags = { ["env"] = "prod" },
        },
        new Agent
        {
            Id = "a-web1", Hostname = "Web-01", Os = "linux", Kernel = "6.8.0", AgentVersion = "1.4.0", ProtocolVersion = 1,
            Status = AgentStatus.Online, Replica = "coord-b",
            FirstSeen = Timestamp.FromDateTimeOffset(Now.AddDays(-3)), LastSeen = Timestamp.FromDateTimeOffset(Now.AddMinutes(-12)),
        },
    ];
}

public sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    /// <summary>What the command wrote to standard output as bytes (<c>runs output</c>), apart from <see cref="Stdout"/>'s text.</summary>
    public byte[] StdoutBytes { get; init; } = [];

    public string[] StdoutLines => Lines(Stdout);

    public string[] StderrLines => Lines(Stderr);

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();

    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}--- stderr\n{Stderr}";
}

/// <summary>Runs fleetctl in-process with a fake clock and an explicit, otherwise empty environment.</summary>
public sealed class CliRunner
{
    public Dictionary<string, string> Environment { get; } = [];

    public string OsUser { get; set; } = "test-operator";

    public Func<Uri, Grpc.Net.Client.GrpcChannel>? ChannelFactory { get; set; }

    public FakeTimeProvider Time { get; } = new(TestFleet.Now);

    public Task<CliRun> RunAsync(params string[] args) => RunAsync(args, CancellationToken.None);

    /// <summary>Runs fleetctl; cancelling <paramref name="ct"/> is Ctrl+C.</summary>
    public async Task<CliRun> RunAsync(string[] args, CancellationToken ct)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        using var stdoutBytes = new MemoryStream();
        var environment = new CliEnvironment(stdout, stderr)
        {
            ChannelFactory = ChannelFactory,
            GetEnvironmentVariable = name => Environment.GetValueOrDefault(name),
            OsUserName = () => OsUser,
            Time = Time,
            OpenStandardOutput = () => stdoutBytes,
        };
        var exitCode = await Cli.RunAsync(args, environment, ct).WaitAsync(TimeSpan.FromSeconds(60));
        return new CliRun(exitCode, stdout.ToString(), stderr.ToString()) { StdoutBytes = stdoutBytes.ToArray() };
    }
}
