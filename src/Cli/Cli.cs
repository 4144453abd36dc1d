using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using Fleet.Cli.Agents;
using Fleet.Cli.Alerts;
using Fleet.Cli.Audit;
using Fleet.Cli.Checklists;
using Fleet.Cli.Metrics;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Logs;
using Fleet.Cli.Receivers;
using Fleet.Cli.Runs;
using Fleet.Cli.Schedules;
using Grpc.Net.Client;

namespace Fleet.Cli;

/// <summary>fleetctl's entry point, callable in-process: parse, report usage errors (exit 2), run the command.</summary>
internal static class Cli
{
    internal static Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, Func<Uri, GrpcChannel>? channelFactory = null, CancellationToken ct = default) =>
        RunAsync(args, new CliEnvironment(stdout, stderr) { ChannelFactory = channelFactory }, ct);

    internal static async Task<int> RunAsync(string[] args, CliEnvironment environment, CancellationToken ct = default)
    {
        try
        {
            var root = BuildRoot(new CliContext(environment));
            var parse = root.Parse(args);
            if (parse.Action is ParseErrorAction)
            {
                await ReportUsageErrorsAsync(parse, environment.Error);
                return ExitCodes.Usage;
            }

            var invocation = new InvocationConfiguration
            {
                Output = environment.Out,
                Error = environment.Error,
                EnableDefaultExceptionHandler = false,
                ProcessTerminationTimeout = environment.HandleProcessTermination ? TimeSpan.FromSeconds(2) : null,
            };
            return await parse.InvokeAsync(invocation, ct);
        }
        catch (Exception ex)
        {
            // Commands report their own failures; this is the last resort, still one line and no stack trace.
            await environment.Error.WriteLineAsync($"fleetctl: unexpected error: {ex.GetType().Name}: {ex.Message.ReplaceLineEndings(" ")}");
            return ExitCodes.Failure;
        }
    }

    /// <summary>The command tree. Each feature contributes its builders, from its own folder (<c>Agents/</c>, <c>Audit/</c>, <c>Metrics/</c>, <c>Runs/</c>, <c>Logs/</c>).</summary>
    internal static RootCommand BuildRoot(CliContext context)
    {
        var root = new RootCommand("fleetctl: operate the fleet through the coordinator's ops API");
        context.Globals.AddTo(root);

        root.Add(AgentsCommands.Build(context));
        root.Add(AlertsCommands.Build(context));
        root.Add(RulesCommands.Build(context));
        root.Add(SilenceCommands.Build(context));
        root.Add(ReceiversCommands.Build(context));
        root.Add(AuditCommands.Build(context));
        root.Add(ChecklistCommands.Build(context));
        root.Add(LogsCommand.Build(context));
        root.Add(MetricsCommands.BuildTop(context));
        root.Add(MetricsCommands.Build(context));
        root.Add(RunCommand.Build(context));
        root.Add(RunsCommands.Build(context));
        root.Add(SchedulesCommands.Build(context));
        root.Add(SchedulesCommands.BuildWindows(context));

        return root;
    }

    private static async Task ReportUsageErrorsAsync(ParseResult parse, TextWriter error)
    {
        var messages = parse.Errors.Select(e => e.Message.ReplaceLineEndings(" ").TrimEnd('.')).Distinct().ToList();
        // "fleetctl agents bogus" also yields "Required command was not provided"; the unrecognized word is the news.
        if (messages.Count > 1 && parse.UnmatchedTokens.Count > 0) messages.RemoveAll(m => m == "Required command was not provided");
        foreach (var message in messages)
        {
            await error.WriteLineAsync($"fleetctl: {message}");
        }
        // Wrong words rather than a wrong option value: point at the help of the command that was reached.
        if (!parse.Errors.All(e => e.SymbolResult is OptionResult or ArgumentResult { Parent: OptionResult }))
        {
            await error.WriteLineAsync($"Run '{CommandPath(parse.CommandResult)} --help' for usage.");
        }
    }

    private static string CommandPath(CommandResult command)
    {
        var names = new List<string>();
        for (SymbolResult? result = command; result is not null; result = result.Parent)
        {
            if (result is CommandResult { Command: var c }) names.Add(c is RootCommand ? "fleetctl" : c.Name);
        }
        names.Reverse();
        return string.Join(' ', names);
    }
}
