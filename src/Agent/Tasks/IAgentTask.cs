using Fleet.Agent.Commands;
using Fleet.Agent.Policy;
using Fleet.Agent.Probes;
using Fleet.Protocol.V1;
using TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Agent.Tasks;

/// <summary>
/// One task the coordinator can run on this host (a runbook step). Registered by name in <see cref="TaskRegistry"/>;
/// <see cref="TaskRuntime"/> validates parameters, checks the local policy, journals, limits concurrency, times out,
/// cancels and streams output around it. A task throws <see cref="PolicyDeniedException"/> or
/// <see cref="TaskParameterException"/> for refusals it finds itself; any other exception becomes a failed run.
/// </summary>
public interface IAgentTask
{
    /// <summary>Name, description, destructive flag, parameters and timeouts; sent to the coordinator in the hello.</summary>
    TaskDescriptor Descriptor { get; }

    /// <summary>Runs the task (or, when <see cref="TaskContext.DryRun"/>, only describes what it would do).
    /// <paramref name="cancellationToken"/> fires on cancel and on timeout.</summary>
    Task<TaskOutcome> ExecuteAsync(TaskContext context, CancellationToken cancellationToken);
}

/// <summary>What one invocation sees.</summary>
public sealed class TaskContext
{
    public required string InvocationId { get; init; }
    public required string TaskName { get; init; }
    public required TaskParameters Parameters { get; init; }
    public required bool DryRun { get; init; }

    /// <summary>The local policy's rules for this task (already allowed as a whole).</summary>
    public required TaskPolicy Policy { get; init; }

    /// <summary>The invocation's combined output: masked, offset-counted, streamed to the coordinator.</summary>
    public required InvocationOutput Output { get; init; }

    public required ICommandRunner Commands { get; init; }
    public required TimeProvider Time { get; init; }

    /// <summary>The probes configured in agent.json (health.check, service.restart's verification).</summary>
    public required IReadOnlyList<ProbeSettings> Probes { get; init; }

    /// <summary>The effective execution timeout.</summary>
    public required TimeSpan Timeout { get; init; }

    /// <summary>PATH for commands (null: the agent's own).</summary>
    public string? CommandSearchPath { get; init; }

    /// <summary>SIGTERM, then after this SIGKILL of the tree, on timeout and cancel.</summary>
    public TimeSpan KillGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A command whose output streams into <see cref="Output"/>; time limits come from the cancellation token.</summary>
    public CommandSpec Command(string fileName, IReadOnlyList<string> arguments, string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal);
        if (CommandSearchPath is not null) env["PATH"] = CommandSearchPath;
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) env[k] = v;
        return new CommandSpec(fileName, arguments)
        {
            WorkingDirectory = workingDirectory,
            Environment = env.Count == 0 ? null : env,
            Timeout = System.Threading.Timeout.InfiniteTimeSpan,
            KillGracePeriod = KillGracePeriod,
            MaxCapturedBytes = 256 * 1024,
            OnOutput = (chunk, ct) => Output.WriteAsync(chunk.Text, ct),
        };
    }

    /// <summary>Runs a command without streaming its output (its text is returned for the task to parse).</summary>
    public CommandSpec QuietCommand(string fileName, params string[] arguments) => Command(fileName, arguments) with { OnOutput = null };
}

/// <summary>How a task ended. The runtime turns it into the invocation's TaskFinished.</summary>
public sealed record TaskOutcome
{
    public TaskStatus Status { get; init; } = TaskStatus.Succeeded;
    public int ExitCode { get; init; }
    public string Summary { get; init; } = "";
    public IReadOnlyDictionary<string, double> Figures { get; init; } = new Dictionary<string, double>();
    public string Error { get; init; } = "";
    public string FailureKind { get; init; } = "";
    public string ResultJson { get; init; } = "";

    public static TaskOutcome Succeeded(string summary, IReadOnlyDictionary<string, double>? figures = null, string? resultJson = null) =>
        new() { Summary = summary, Figures = figures ?? new Dictionary<string, double>(), ResultJson = resultJson ?? "" };

    /// <param name="kind">"task" (the task failed), "policy", "parameter", "unknown-task", "interrupted".</param>
    public static TaskOutcome Failed(string error, string kind = FailureKinds.Task, IReadOnlyDictionary<string, double>? figures = null, string? resultJson = null, int exitCode = 0) =>
        new()
        {
            Status = TaskStatus.Failed, Error = error, FailureKind = kind, Summary = error,
            Figures = figures ?? new Dictionary<string, double>(), ResultJson = resultJson ?? "", ExitCode = exitCode,
        };
}

/// <summary>TaskFinished.failure_kind values.</summary>
public static class FailureKinds
{
    public const string Task = "task";
    public const string Policy = "policy";
    public const string Parameter = "parameter";
    public const string UnknownTask = "unknown-task";
    public const string Interrupted = "interrupted";
}
