using Microsoft.Extensions.Logging;

namespace Fleet.Agent.Commands;

/// <summary>Log templates of <see cref="CommandRunner"/>. Argument values and environment values are never logged:
/// they may hold secrets (passwords, tokens). Only the command name and the argument count are.</summary>
internal static partial class CommandRunnerLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information,
        Message = "Started {Command} as pid {ProcessId} with {ArgumentCount} arguments")]
    public static partial void Started(ILogger logger, string command, int processId, int argumentCount);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information,
        Message = "{Command} (pid {ProcessId}) finished: {Outcome}, exit code {ExitCode}, in {DurationMs} ms")]
    public static partial void Finished(ILogger logger, string command, int processId, CommandOutcome outcome, int exitCode, long durationMs);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning,
        Message = "{Command} failed to start with {ArgumentCount} arguments: {Error}")]
    public static partial void FailedToStart(ILogger logger, string command, int argumentCount, string error);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning,
        Message = "{Command} (pid {ProcessId}) {Outcome}; sending SIGTERM, killing its process tree after {GracePeriodMs} ms")]
    public static partial void Terminating(ILogger logger, string command, int processId, CommandOutcome outcome, long gracePeriodMs);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning,
        Message = "{Command} (pid {ProcessId}) still running after the grace period; killing its process tree")]
    public static partial void Killing(ILogger logger, string command, int processId);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning,
        Message = "Killed {Count} leftover processes of {Command} (pid {ProcessId})")]
    public static partial void KilledLeftovers(ILogger logger, int count, string command, int processId);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning,
        Message = "Output of {Command} (pid {ProcessId}) still open {DrainMs} ms after it exited (a background process holds it); stopped reading")]
    public static partial void OutputAbandoned(ILogger logger, string command, int processId, long drainMs);

    [LoggerMessage(EventId = 8, Level = LogLevel.Warning,
        Message = "Output callback for {Command} (pid {ProcessId}) failed; output is no longer streamed for this run")]
    public static partial void OutputCallbackFailed(ILogger logger, Exception exception, string command, int processId);

    [LoggerMessage(EventId = 9, Level = LogLevel.Warning,
        Message = "Could not signal {Command} (pid {ProcessId}) with {Signal}: errno {Errno}")]
    public static partial void SignalFailed(ILogger logger, string command, int processId, int signal, int errno);

    [LoggerMessage(EventId = 10, Level = LogLevel.Warning,
        Message = "Killing the process tree of {Command} (pid {ProcessId}) failed")]
    public static partial void KillFailed(ILogger logger, Exception exception, string command, int processId);
}
