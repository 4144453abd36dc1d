using Grpc.Net.Client;

namespace Fleet.Cli;

/// <summary>
/// Everything fleetctl takes from the outside world, so tests can run it in-process:
/// output streams, environment variables, the OS user, the clock and the gRPC channel.
/// </summary>
internal sealed class CliEnvironment
{
    public CliEnvironment(TextWriter stdout, TextWriter stderr)
    {
        Out = stdout;
        Error = stderr;
    }

    public TextWriter Out { get; }

    public TextWriter Error { get; }

    /// <summary>Standard output as bytes, for output that must arrive unchanged (<c>runs output</c>); write <see cref="Out"/>'s text first.</summary>
    public Func<Stream> OpenStandardOutput { get; init; } = Console.OpenStandardOutput;

    /// <summary>Creates the channel for a coordinator address; null means <see cref="GrpcChannel.ForAddress(Uri)"/>.</summary>
    public Func<Uri, GrpcChannel>? ChannelFactory { get; init; }

    /// <summary>Environment variable lookup (FLEET_COORDINATOR, FLEET_USER, ...).</summary>
    public Func<string, string?> GetEnvironmentVariable { get; init; } = Environment.GetEnvironmentVariable;

    /// <summary>The OS user name, the default for --user.</summary>
    public Func<string> OsUserName { get; init; } = () => Environment.UserName;

    /// <summary>Clock for displayed ages ("4s ago"). Call deadlines use the wall clock, like gRPC itself.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Installs Ctrl+C / SIGTERM handling that cancels the running command (off for in-process tests).</summary>
    public bool HandleProcessTermination { get; init; }

    public GrpcChannel CreateChannel(Uri coordinator) =>
        ChannelFactory?.Invoke(coordinator) ?? GrpcChannel.ForAddress(coordinator);
}
