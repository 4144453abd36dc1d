using Fleet.Agent.Commands;
using Fleet.Protocol.V1;
using ParamType = Fleet.Protocol.V1.ParameterSchema.Types.Type;

namespace Fleet.Agent.Tasks.Runbook;

/// <summary>
/// app.command: runs a command the local policy declares by name (argument vector, working directory, timeout,
/// environment), never a command line from the coordinator. Output streams as it is produced. Always marked
/// destructive: the agent cannot know what a declared command does.
/// The optional secret parameter <c>token</c> (an API token for a deploy hook, say) reaches the command only as the
/// environment variable FLEET_TOKEN; it is never logged and is masked in the output, the summary and the result.
/// </summary>
public sealed class AppCommandTask : IAgentTask
{
    public TaskDescriptor Descriptor { get; } = TaskSchema.Describe(
        "app.command", "Run an application command declared by name in the host's local policy (e.g. cache-clear).", true,
        TimeSpan.FromMinutes(5), TimeSpan.FromHours(2),
        TaskSchema.Parameter("command", ParamType.String, "The command's name in the local policy.", required: true, pattern: @"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\z"),
        TaskSchema.Parameter("token", ParamType.String, "A secret handed to the command as the environment variable FLEET_TOKEN.", secret: true));

    public async Task<TaskOutcome> ExecuteAsync(TaskContext context, CancellationToken cancellationToken)
    {
        var command = context.Policy.Command(context.Parameters.String("command")!);
        var display = string.Join(' ', command.Argv);
        if (context.DryRun)
        {
            await context.Output.WriteLineAsync($"would run: {display}{(command.WorkingDirectory is null ? "" : $" (in {command.WorkingDirectory})")}", cancellationToken);
            return TaskOutcome.Succeeded($"dry run: would run {command.Name}: {display}");
        }

        using var limit = command.Timeout is { } t ? new CancellationTokenSource(t, context.Time) : new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, limit.Token);
        var environment = new Dictionary<string, string>(command.Environment ?? new Dictionary<string, string>(), StringComparer.Ordinal);
        if (context.Parameters.String("token") is { Length: > 0 } token) environment["FLEET_TOKEN"] = token;
        var spec = context.Command(command.Argv[0], [.. command.Argv.Skip(1)], command.WorkingDirectory, environment);
        var result = await context.Commands.RunAsync(spec, linked.Token);
        cancellationToken.ThrowIfCancellationRequested();
        var figures = new Dictionary<string, double> { ["command.seconds"] = result.Duration.TotalSeconds, ["command.exit_code"] = result.ExitCode };
        if (limit.IsCancellationRequested)
            return TaskOutcome.Failed($"{command.Name} exceeded its policy timeout of {Fleet.Protocol.Durations.Format(command.Timeout!.Value)} and was stopped", figures: figures, exitCode: result.ExitCode)
                with { Status = Fleet.Protocol.V1.TaskStatus.TimedOut, FailureKind = "" };
        return result switch
        {
            { Outcome: CommandOutcome.FailedToStart } => TaskOutcome.Failed($"{command.Name}: {result.Error}", figures: figures, exitCode: -1),
            { ExitCode: 0 } => TaskOutcome.Succeeded($"{command.Name} succeeded", figures) with { ExitCode = 0 },
            _ => TaskOutcome.Failed($"{command.Name} exited with code {result.ExitCode}", figures: figures, exitCode: result.ExitCode),
        };
    }
}
