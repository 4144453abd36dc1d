using System.Globalization;
using System.Text;
using System.Text.Json;
using Fleet.Agent.Commands;
using Fleet.Agent.Transport;

namespace Fleet.Agent.Logs;

/// <summary>
/// Follows a systemd unit's journal: <c>journalctl -o json --follow -u UNIT</c> with <c>--after-cursor</c> the last
/// cursor read (or acknowledged, after a restart; <c>--since now</c> the first time), through the command runner.
/// The journal cursor is the checkpoint. journalctl is restarted with backoff whenever it exits.
/// </summary>
public sealed partial class JournalSource(
    LogSourceSettings source,
    LogEntryProcessor processor,
    LogShipper shipper,
    LogCheckpoints checkpoints,
    LogCounters counters,
    ICommandRunner runner,
    string? searchPath,
    TimeProvider time,
    ILogger logger)
{
    readonly StringBuilder buffer = new();
    string? cursor = checkpoints.Cursor(source.Name);

    public string Path => "journal:" + source.JournalUnit;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var backoff = new Backoff(TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30));
        while (!cancellationToken.IsCancellationRequested)
        {
            var before = cursor;
            buffer.Clear();
            var result = await runner.RunAsync(Spec(), cancellationToken);
            if (cancellationToken.IsCancellationRequested) break;
            if (buffer.Length > 0) ProcessLine(buffer.ToString());
            counters.JournalRestarted();
            if (cursor != before) backoff.Reset();
            var delay = backoff.Next();
            LogExited(source.Name, result.Outcome.ToString(), result.ExitCode, result.Error ?? FirstLine(result.StandardError), delay.TotalSeconds);
            try { await Task.Delay(delay, time, cancellationToken); }
            catch (OperationCanceledException) { break; }
        }
    }

    CommandSpec Spec()
    {
        List<string> args = ["-o", "json", "--follow", "--no-pager", "-u", source.JournalUnit!];
        if (cursor is not null) args.AddRange(["--after-cursor", cursor]);
        else if (source.StartAt == LogStartAt.Beginning) args.Add("--lines=all");
        else args.AddRange(["--since", "now"]);
        return new CommandSpec("journalctl", args)
        {
            Timeout = Timeout.InfiniteTimeSpan,
            KillGracePeriod = TimeSpan.FromSeconds(2),
            MaxCapturedBytes = 4096,
            Environment = searchPath is null ? null : new Dictionary<string, string?> { ["PATH"] = searchPath },
            OnOutput = OnOutput,
        };
    }

    ValueTask OnOutput(OutputChunk chunk, CancellationToken cancellationToken)
    {
        if (chunk.Stream != OutputStream.StandardOutput) return ValueTask.CompletedTask;
        var text = chunk.Text;
        var start = 0;
        while (true)
        {
            var newline = text.IndexOf('\n', start);
            if (newline < 0)
            {
                buffer.Append(text, start, text.Length - start);
                break;
            }
            if (buffer.Length > 0)
            {
                buffer.Append(text, start, newline - start);
                ProcessLine(buffer.ToString());
                buffer.Clear();
            }
            else ProcessLine(text[start..newline]);
            start = newline + 1;
        }
        // Backpressure: while the shipper is full, journalctl's output waits in its pipe (and the journal), not in memory.
        return shipper.Saturated ? new ValueTask(shipper.WaitForRoomAsync(cancellationToken)) : ValueTask.CompletedTask;
    }

    void ProcessLine(string line)
    {
        if (string.IsNullOrWhiteSpace(line)) return;
        counters.Read(1, Encoding.UTF8.GetByteCount(line) + 1);
        try
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("__CURSOR", out var c) || c.GetString() is not { Length: > 0 } entryCursor)
            {
                LogUnparsable(source.Name);
                return;
            }
            cursor = entryCursor;
            var message = root.TryGetProperty("MESSAGE", out var m) ? Message(m) : null;
            if (message is null) return;
            var timeMs = root.TryGetProperty("__REALTIME_TIMESTAMP", out var ts) && long.TryParse(ts.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out var micros)
                ? micros / 1000
                : time.GetUtcNow().ToUnixTimeMilliseconds();
            var severity = root.TryGetProperty("PRIORITY", out var p) ? LogEntryProcessor.FromPriority(p.ValueKind == JsonValueKind.String ? p.GetString() : p.GetRawText()) : "";
            var entry = processor.Process(message, Path, "", 0, entryCursor, timeMs, severity.Length > 0 ? severity : null);
            if (entry is not null) shipper.Add(entry, CheckpointMark.Journal(source.Name, entryCursor));
        }
        catch (JsonException)
        {
            LogUnparsable(source.Name);
        }
    }

    /// <summary>MESSAGE is a string, or an array of bytes when it is not valid UTF-8 (or null when too large).</summary>
    static string? Message(JsonElement value)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                return value.GetString();
            case JsonValueKind.Array:
                var bytes = new byte[value.GetArrayLength()];
                var i = 0;
                foreach (var b in value.EnumerateArray()) bytes[i++] = b.TryGetByte(out var v) ? v : (byte)'?';
                return Encoding.UTF8.GetString(bytes).TrimEnd('\n');
            default:
                return null;
        }
    }

    static string FirstLine(string text) => text.Split('\n', 2)[0];

    [LoggerMessage(Level = LogLevel.Warning, Message = "Logs {Source}: journalctl ended ({Outcome}, exit {ExitCode}: {Error}); restarting in {Seconds:0.0} s")]
    partial void LogExited(string source, string outcome, int exitCode, string? error, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Logs {Source}: a journalctl line is not a JSON entry with a cursor; skipped")]
    partial void LogUnparsable(string source);
}
