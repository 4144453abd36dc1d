namespace Fleet.Agent.Commands;

/// <summary>
/// One OS command for <see cref="ICommandRunner"/>. The command is never run through a shell:
/// <see cref="FileName"/> is resolved on the child's PATH and <see cref="Arguments"/> are passed as an argument vector.
/// </summary>
/// <param name="FileName">A bare command name (looked up on PATH) or a path containing '/' (used as is; a relative
/// path is taken relative to <see cref="WorkingDirectory"/>, or the agent's current directory when that is null).</param>
/// <param name="Arguments">Passed to the child verbatim, one argv entry each. Never logged (they may hold secrets).</param>
public sealed record CommandSpec(string FileName, IReadOnlyList<string> Arguments)
{
    public string? WorkingDirectory { get; init; }

    /// <summary>Overrides/additions to the agent's environment; a null value removes the variable.
    /// A PATH given here is also the PATH <see cref="FileName"/> is resolved on.</summary>
    public IReadOnlyDictionary<string, string?>? Environment { get; init; }

    /// <summary>Wall-clock limit for the whole run. <see cref="System.Threading.Timeout.InfiniteTimeSpan"/> disables it.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>On timeout/cancellation the process gets SIGTERM; after this long whatever is left of its tree gets SIGKILL.</summary>
    public TimeSpan KillGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Written to the child's stdin (UTF-8, no BOM), which is then closed. When null, stdin is closed at once.</summary>
    public string? StandardInput { get; init; }

    /// <summary>Per stream, counted as UTF-8 bytes; beyond it output is still streamed to <see cref="OnOutput"/> but not captured.</summary>
    public int MaxCapturedBytes { get; init; } = 1024 * 1024;

    /// <summary>
    /// Receives output as it arrives, in chunks as read from the pipe (not split into lines). Calls are never concurrent.
    /// The token is the caller's cancellation token. If the callback throws, streaming stops for the rest of the run
    /// (capture continues) and the failure is reported in <see cref="CommandResult.Error"/>.
    /// </summary>
    public Func<OutputChunk, CancellationToken, ValueTask>? OnOutput { get; init; }
}

public enum OutputStream { StandardOutput, StandardError }

public readonly record struct OutputChunk(OutputStream Stream, string Text);

public enum CommandOutcome { Exited, TimedOut, Cancelled, FailedToStart }

/// <param name="ExitCode">The process's exit code (128 + signal number when killed by a signal); -1 when it never started
/// or its exit could not be observed.</param>
/// <param name="OutputTruncated">True when either stream produced more than <see cref="CommandSpec.MaxCapturedBytes"/>.</param>
/// <param name="Error">Why it failed to start, timed out or was cancelled, plus any non-fatal problem
/// (streaming callback failed, output left open by a background process); null when there is nothing to say.</param>
public sealed record CommandResult(
    CommandOutcome Outcome,
    int ExitCode,
    string StandardOutput,
    string StandardError,
    TimeSpan Duration,
    bool OutputTruncated,
    string? Error);

/// <summary>The one place the agent starts OS commands.</summary>
public interface ICommandRunner
{
    /// <summary>Runs the command to completion. Never throws for command failures, timeouts or cancellation:
    /// those come back as a <see cref="CommandResult"/> (only a null <paramref name="spec"/> throws).</summary>
    Task<CommandResult> RunAsync(CommandSpec spec, CancellationToken cancellationToken);
}
