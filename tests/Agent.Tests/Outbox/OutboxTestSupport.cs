using System.Collections.Concurrent;
using System.Text;
using Fleet.Agent.Outbox;
using Fleet.Testing;
using Microsoft.Extensions.Logging;

namespace Fleet.Agent.Tests.Outbox;

/// <summary>Captures log entries so tests can assert that something was (or was not) logged.</summary>
public sealed class ListLogger<T> : ILogger<T>
{
    public ConcurrentQueue<(LogLevel Level, string Message)> Entries { get; } = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Enqueue((logLevel, formatter(state, exception)));

    public bool Has(LogLevel level, string fragment) =>
        Entries.Any(e => e.Level == level && e.Message.Contains(fragment, StringComparison.OrdinalIgnoreCase));
}

internal static class OutboxTestSupport
{
    public static DurableOutbox Open(string directory, long maxBytes = 64L * 1024 * 1024, long segmentBytes = 8L * 1024 * 1024, ILogger<DurableOutbox>? logger = null) =>
        DurableOutbox.Open(
            new OutboxOptions { Directory = directory, MaxBytes = maxBytes, SegmentBytes = segmentBytes },
            logger ?? new ListLogger<DurableOutbox>());

    public static byte[] Payload(string text) => Encoding.UTF8.GetBytes(text);

    public static byte[] Payload(int i, int size)
    {
        var bytes = new byte[size];
        for (var k = 0; k < size; k++) bytes[k] = (byte)('a' + ((i + k) % 26));
        var label = Encoding.ASCII.GetBytes(i.ToString("D6", System.Globalization.CultureInfo.InvariantCulture));
        label.AsSpan(0, Math.Min(label.Length, size)).CopyTo(bytes);
        return bytes;
    }

    public static string Text(OutboxRecord record) => Encoding.UTF8.GetString(record.Payload.Span);

    public static async Task<OutboxKey> AppendOk(this DurableOutbox outbox, byte[] payload)
    {
        var result = await outbox.AppendAsync(payload, CancellationToken.None);
        Assert.True(result.Status == AppendStatus.Appended, $"append dropped: {result.Reason}");
        Assert.Null(result.Reason);
        return result.Key;
    }

    public static async Task<OutboxRecord> Next(this DurableOutbox outbox) =>
        await outbox.ReadNextAsync(CancellationToken.None).AsTask().DefaultTimeout(TimeSpan.FromSeconds(10));

    /// <summary>
    /// Reads until nothing more is available. A durable record is returned without waiting, so a short wait is enough
    /// to tell "nothing left" (every append the test awaited is already durable and visible).
    /// </summary>
    public static async Task<List<OutboxRecord>> ReadAvailable(this DurableOutbox outbox)
    {
        var records = new List<OutboxRecord>();
        while (true)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(30));
            try
            {
                records.Add(await outbox.ReadNextAsync(cts.Token));
            }
            catch (OperationCanceledException)
            {
                return records;
            }
        }
    }

    public static string[] SegmentFiles(string directory) =>
        Directory.GetFiles(directory, "*.seg").Order(StringComparer.Ordinal).ToArray();

    public static long SegmentBytesOnDisk(string directory) =>
        SegmentFiles(directory).Sum(f => new FileInfo(f).Length);

    /// <summary>
    /// Copies the outbox's files as they are (also while it is open, i.e. what a kill -9 would leave). Uses cp because
    /// .NET's own file APIs honour the exclusive lock the open outbox holds on its state file.
    /// </summary>
    public static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from))
        {
            using var cp = System.Diagnostics.Process.Start("cp", [file, Path.Combine(to, Path.GetFileName(file))]);
            cp.WaitForExit();
            Assert.Equal(0, cp.ExitCode);
        }
    }
}
