using System.CommandLine;
using Fleet.Cli.Infrastructure;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Fleet.Cli;

/// <summary>What every command builder gets: the environment, the global options and the one way to call the coordinator.</summary>
internal sealed class CliContext(CliEnvironment environment)
{
    public CliEnvironment Environment { get; } = environment;

    public GlobalOptions Globals { get; } = new(environment);

    /// <summary>
    /// Runs a command body against the coordinator. The body gets a call invoker that already carries the
    /// global options; any failure becomes one line on stderr and exit code 1 (130 when interrupted).
    /// </summary>
    public async Task<int> CallCoordinatorAsync(ParseResult parse, Func<CoordinatorSession, Task<int>> body, CancellationToken cancellationToken)
    {
        var coordinator = parse.GetRequiredValue(Globals.Coordinator);
        var user = parse.GetRequiredValue(Globals.User);
        var timeout = Globals.TimeoutOf(parse);
        try
        {
            using var channel = Environment.CreateChannel(coordinator);
            var invoker = channel.Intercept(new CallDefaultsInterceptor(user, timeout, cancellationToken));
            return await body(new CoordinatorSession(invoker, Environment.Out, Environment.Time, cancellationToken));
        }
        catch (Exception ex)
        {
            var (message, exitCode) = ErrorReport.Describe(ex, coordinator, timeout, cancellationToken);
            await Environment.Error.WriteLineAsync($"fleetctl: {message}");
            return exitCode;
        }
    }
}

/// <summary>One command's connection to the coordinator.</summary>
internal sealed record CoordinatorSession(CallInvoker CallInvoker, TextWriter Out, TimeProvider Time, CancellationToken CancellationToken);
