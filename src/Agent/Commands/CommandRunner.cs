using System.Buffers;
using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Fleet.Agent.Commands;

/// <summary>
/// Starts OS commands without a shell, streams and captures their output, and enforces timeouts and cancellation:
/// SIGTERM to the command, then — once it has exited or <see cref="CommandSpec.KillGracePeriod"/> has passed —
/// SIGKILL to whatever is left of its process tree (including children it orphaned).
/// </summary>
public sealed class CommandRunner(ILogger<CommandRunner> logger, TimeProvider timeProvider) : ICommandRunner
{
    /// <summary>How long, after the command exited, to wait for end-of-file on its output. Longer means a background
    /// process it started still holds the pipes; reading then stops so the run does not hang.</summary>
    internal static readonly TimeSpan OutputDrainTimeout = TimeSpan.FromSeconds(2);

    /// <summary>Bound on waiting for the exit after SIGKILL (only a process stuck in the kernel outlives it).</summary>
    internal static readonly TimeSpan ExitAfterKillTimeout = TimeSpan.FromSeconds(10);

    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);

    public async Task<CommandResult> RunAsync(CommandSpec spec, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var startedAt = timeProvider.GetTimestamp();
        var argumentCount = spec.Arguments?.Count ?? 0;

        if (cancellationToken.IsCancellationRequested)
        {
            return new CommandResult(CommandOutcome.Cancelled, -1, "", "", TimeSpan.Zero, false, "Cancelled before the command was started");
        }

        if (Validate(spec) is { } invalid) return FailedToStart(invalid);

        var psi = new ProcessStartInfo
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardInputEncoding = Utf8,
            WorkingDirectory = spec.WorkingDirectory ?? "",
        };
        foreach (var argument in spec.Arguments!) psi.ArgumentList.Add(argument);
        if (spec.Environment is not null)
        {
            foreach (var (name, value) in spec.Environment)
            {
                if (value is null) psi.Environment.Remove(name);
                else psi.Environment[name] = value;
            }
        }

        var searchPath = spec.Environment?.TryGetValue("PATH", out var childPath) == true && childPath is not null
            ? childPath
            : Environment.GetEnvironmentVariable("PATH");
        if (ExecutableResolver.Resolve(spec.FileName, searchPath, spec.WorkingDirectory, out var resolveError) is not { } path)
        {
            return FailedToStart(resolveError!);
        }
        psi.FileName = path;

        using var process = new Process { StartInfo = psi };
        using var timeoutCts = spec.Timeout == Timeout.InfiniteTimeSpan
            ? new CancellationTokenSource()
            : new CancellationTokenSource(spec.Timeout, timeProvider);
        using var runCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutCts.Token);
        using var ioCts = new CancellationTokenSource(); // abandons pipe I/O

        try
        {
            if (!process.Start()) return FailedToStart($"Command '{spec.FileName}' ('{path}') did not start");
        }
        catch (Exception ex) when (ex is Win32Exception or InvalidOperationException or IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            return FailedToStart($"Command '{spec.FileName}' ('{path}') could not be started: {ex.Message}");
        }

        var pid = process.Id;
        CommandRunnerLog.Started(logger, spec.FileName, pid, argumentCount);

        var sink = new OutputSink(spec.OnOutput, logger, spec.FileName, pid, cancellationToken, ioCts.Token);
        var stdout = new StreamCapture(spec.MaxCapturedBytes);
        var stderr = new StreamCapture(spec.MaxCapturedBytes);
        var stdoutPump = PumpAsync(process.StandardOutput.BaseStream, OutputStream.StandardOutput, stdout, sink, ioCts.Token);
        var stderrPump = PumpAsync(process.StandardError.BaseStream, OutputStream.StandardError, stderr, sink, ioCts.Token);
        var stdinFeed = FeedAsync(process.StandardInput.BaseStream, spec.StandardInput, ioCts.Token);

        var outcome = CommandOutcome.Exited;
        var errors = new List<string>();
        var finished = false;
        try
        {
            try
            {
                await process.WaitForExitAsync(runCts.Token);
            }
            catch (OperationCanceledException) when (runCts.IsCancellationRequested)
            {
                if (!process.HasExited)
                {
                    outcome = cancellationToken.IsCancellationRequested ? CommandOutcome.Cancelled : CommandOutcome.TimedOut;
                    errors.Add(outcome == CommandOutcome.Cancelled
                        ? "Cancelled"
                        : $"Timed out after {spec.Timeout.TotalSeconds:0.###} s");
                    await TerminateAsync(process, pid, spec, outcome);
                }
            }

            // Output already in the pipes is read to the end; a pipe still held open by a process the command left
            // running in the background is abandoned after a short wait.
            var pumps = Task.WhenAll(stdoutPump, stderrPump);
            if (!await CompletesWithinAsync(pumps, OutputDrainTimeout))
            {
                CommandRunnerLog.OutputAbandoned(logger, spec.FileName, pid, (long)OutputDrainTimeout.TotalMilliseconds);
                errors.Add($"Output was still open {OutputDrainTimeout.TotalSeconds:0.#} s after the command exited " +
                           "(a background process it started holds it); output after that point is missing");
                ioCts.Cancel();
                await CompletesWithinAsync(pumps, TimeSpan.FromSeconds(1));
            }
            ioCts.Cancel();
            await CompletesWithinAsync(stdinFeed, TimeSpan.FromSeconds(1));
            finished = true;
        }
        finally
        {
            if (!finished)
            {
                // Only reached through a bug (an unexpected exception): never leave the command running.
                ioCts.Cancel();
                KillTree(process, pid, spec.FileName);
            }
        }

        if (sink.Failure is { } streamingFailure) errors.Add(streamingFailure);
        var (outText, outTruncated) = stdout.Complete();
        var (errText, errTruncated) = stderr.Complete();
        var exitCode = process.HasExited ? process.ExitCode : -1;
        var duration = timeProvider.GetElapsedTime(startedAt);
        CommandRunnerLog.Finished(logger, spec.FileName, pid, outcome, exitCode, (long)duration.TotalMilliseconds);
        return new CommandResult(outcome, exitCode, outText, errText, duration, outTruncated || errTruncated,
            errors.Count == 0 ? null : string.Join("; ", errors));

        CommandResult FailedToStart(string error)
        {
            CommandRunnerLog.FailedToStart(logger, spec.FileName ?? "", argumentCount, error);
            return new CommandResult(CommandOutcome.FailedToStart, -1, "", "", timeProvider.GetElapsedTime(startedAt), false, error);
        }
    }

    private static string? Validate(CommandSpec spec)
    {
        if (string.IsNullOrEmpty(spec.FileName)) return "Command file name is empty";
        if (spec.FileName.Contains('\0')) return "Command file name contains a NUL character";
        if (spec.Arguments is null) return $"Command '{spec.FileName}' has no argument list (null)";
        for (var i = 0; i < spec.Arguments.Count; i++)
        {
            if (spec.Arguments[i] is null) return $"Command '{spec.FileName}': argument {i} is null";
            if (spec.Arguments[i].Contains('\0')) return $"Command '{spec.FileName}': argument {i} contains a NUL character";
        }
        if (spec.Environment is not null)
        {
            foreach (var name in spec.Environment.Keys)
            {
                if (name.Length == 0 || name.Contains('=') || name.Contains('\0'))
                    return $"Command '{spec.FileName}': invalid environment variable name '{name}'";
                if (spec.Environment[name]?.Contains('\0') == true)
                    return $"Command '{spec.FileName}': environment variable '{name}' contains a NUL character";
            }
        }
        if (spec.Timeout <= TimeSpan.Zero && spec.Timeout != Timeout.InfiniteTimeSpan)
            return $"Command '{spec.FileName}': timeout must be positive or infinite, was {spec.Timeout}";
        if (spec.KillGracePeriod < TimeSpan.Zero && spec.KillGracePeriod != Timeout.InfiniteTimeSpan)
            return $"Command '{spec.FileName}': kill grace period must not be negative, was {spec.KillGracePeriod}";
        if (spec.MaxCapturedBytes < 0)
            return $"Command '{spec.FileName}': MaxCapturedBytes must not be negative, was {spec.MaxCapturedBytes}";
        if (spec.WorkingDirectory is not null && !Directory.Exists(spec.WorkingDirectory))
            return $"Command '{spec.FileName}': working directory '{spec.WorkingDirectory}' does not exist";
        return null;
    }

    /// <summary>SIGTERM; wait for the exit up to the grace period; SIGKILL whatever is left of the tree.</summary>
    private async Task TerminateAsync(Process process, int pid, CommandSpec spec, CommandOutcome outcome)
    {
        // Snapshot before signalling: once the command exits its children are re-parented and cannot be found from it.
        var tree = ProcessTree.Descendants([pid]);
        CommandRunnerLog.Terminating(logger, spec.FileName, pid, outcome, (long)spec.KillGracePeriod.TotalMilliseconds);
        if (Libc.Kill(pid, Libc.SIGTERM) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != Libc.ESRCH) CommandRunnerLog.SignalFailed(logger, spec.FileName, pid, Libc.SIGTERM, errno);
        }

        var exited = await WaitForExitAsync(process, spec.KillGracePeriod);
        if (!exited) CommandRunnerLog.Killing(logger, spec.FileName, pid);
        KillTree(process, pid, spec.FileName, tree);
        if (!exited) await WaitForExitAsync(process, ExitAfterKillTimeout);
    }

    /// <summary>Kills the command's process tree and any processes of <paramref name="known"/> (and their descendants)
    /// that outlived it. Never throws.</summary>
    private void KillTree(Process process, int pid, string command, HashSet<ProcessTree.ProcessId>? known = null)
    {
        var all = new HashSet<ProcessTree.ProcessId>(known ?? []);
        try
        {
            if (!process.HasExited)
            {
                all.UnionWith(ProcessTree.Descendants([pid]));
                process.Kill(entireProcessTree: true);
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or Win32Exception or NotSupportedException or AggregateException)
        {
            CommandRunnerLog.KillFailed(logger, ex, command, pid);
        }

        try
        {
            var leftovers = ProcessTree.KillAll(all);
            if (leftovers > 0) CommandRunnerLog.KilledLeftovers(logger, leftovers, command, pid);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            CommandRunnerLog.KillFailed(logger, ex, command, pid);
        }
    }

    private async Task<bool> WaitForExitAsync(Process process, TimeSpan timeout)
    {
        if (process.HasExited) return true;
        if (timeout == TimeSpan.Zero) return false;
        using var cts = timeout == Timeout.InfiniteTimeSpan ? new CancellationTokenSource() : new CancellationTokenSource(timeout, timeProvider);
        try
        {
            await process.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return process.HasExited;
        }
    }

    private async Task<bool> CompletesWithinAsync(Task task, TimeSpan timeout)
    {
        try
        {
            await task.WaitAsync(timeout, timeProvider);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    /// <summary>Reads one output pipe to its end (or until abandoned), capturing and streaming it. Never throws.</summary>
    private static async Task PumpAsync(Stream stream, OutputStream which, StreamCapture capture, OutputSink sink, CancellationToken abandon)
    {
        var decoder = Utf8.GetDecoder();
        var bytes = ArrayPool<byte>.Shared.Rent(16 * 1024);
        var chars = ArrayPool<char>.Shared.Rent(Utf8.GetMaxCharCount(bytes.Length) + 8);
        try
        {
            while (true)
            {
                int read;
                try
                {
                    read = await stream.ReadAsync(bytes.AsMemory(), abandon);
                }
                catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
                {
                    break;
                }
                if (read == 0) break;
                var count = decoder.GetChars(bytes, 0, read, chars, 0, flush: false);
                if (count > 0) await Emit(new string(chars, 0, count));
            }
            var rest = decoder.GetChars([], 0, 0, chars, 0, flush: true);
            if (rest > 0) await Emit(new string(chars, 0, rest));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
            ArrayPool<char>.Shared.Return(chars);
            try { stream.Dispose(); } catch (IOException) { }
        }

        async ValueTask Emit(string text)
        {
            capture.Append(text);
            await sink.WriteAsync(new OutputChunk(which, text));
        }
    }

    /// <summary>Writes the input (if any) to the child's stdin and closes it. Never throws.</summary>
    private static async Task FeedAsync(Stream stdin, string? input, CancellationToken abandon)
    {
        try
        {
            if (input is { Length: > 0 })
            {
                await stdin.WriteAsync(Utf8.GetBytes(input), abandon);
                await stdin.FlushAsync(abandon);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
        {
            // The command exited (or was killed) without reading all of it: EPIPE.
        }
        finally
        {
            try { stdin.Dispose(); } catch (IOException) { }
        }
    }

    /// <summary>Captured text of one stream, up to a byte budget (UTF-8). Thread-safe; <see cref="Complete"/> freezes it
    /// so an abandoned pump that is still running cannot change the result.</summary>
    private sealed class StreamCapture(int maxBytes)
    {
        private readonly Lock _gate = new();
        private readonly StringBuilder _text = new();
        private int _bytes;
        private bool _truncated;
        private bool _completed;

        public void Append(string text)
        {
            lock (_gate)
            {
                if (_completed || _truncated) return;
                var (chars, bytes) = PrefixWithin(text, maxBytes - _bytes);
                _text.Append(text, 0, chars);
                _bytes += bytes;
                if (chars < text.Length) _truncated = true;
            }
        }

        public (string Text, bool Truncated) Complete()
        {
            lock (_gate)
            {
                _completed = true;
                return (_text.ToString(), _truncated);
            }
        }

        /// <summary>The longest prefix (in chars, never splitting a surrogate pair) whose UTF-8 size fits the budget.</summary>
        private static (int Chars, int Bytes) PrefixWithin(string text, int budget)
        {
            var used = 0;
            var i = 0;
            while (i < text.Length)
            {
                var c = text[i];
                int size, length = 1;
                if (c < 0x80) size = 1;
                else if (c < 0x800) size = 2;
                else if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { size = 4; length = 2; }
                else size = 3;
                if (used + size > budget) break;
                used += size;
                i += length;
            }
            return (i, used);
        }
    }

    /// <summary>Serialises calls to <see cref="CommandSpec.OnOutput"/>; after the first failure it stops calling it.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001",
        Justification = "SemaphoreSlim only needs disposing when its AvailableWaitHandle is used; an abandoned pump may still release it.")]
    private sealed class OutputSink(
        Func<OutputChunk, CancellationToken, ValueTask>? callback,
        ILogger logger,
        string command,
        int pid,
        CancellationToken callerToken,
        CancellationToken abandon)
    {
        private readonly SemaphoreSlim _gate = new(1, 1);
        private volatile bool _stopped;

        public string? Failure { get; private set; }

        public async ValueTask WriteAsync(OutputChunk chunk)
        {
            if (callback is null || _stopped) return;
            try
            {
                await _gate.WaitAsync(abandon);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            try
            {
                if (_stopped) return;
                await callback(chunk, callerToken);
            }
            catch (Exception ex)
            {
                _stopped = true;
                // The caller cancelling its own callback is expected, not a failure worth reporting.
                if (!(ex is OperationCanceledException && callerToken.IsCancellationRequested))
                {
                    Failure = $"Output callback failed, output was no longer streamed: {ex.GetType().Name}: {ex.Message}";
                    CommandRunnerLog.OutputCallbackFailed(logger, ex, command, pid);
                }
            }
            finally
            {
                _gate.Release();
            }
        }
    }
}
