using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Fleet.Bench.LoadGen.StubServer;

/// <summary>
/// Counts log lines by their sequence number (<c>seq=N</c> anywhere in the line, as bench/scenarios/loggen.py writes
/// them): distinct, duplicates, and (at the end) missing ones against <c>--expect-lines</c>. Fed by the gateway (the
/// entries of a Logs batch, counted before the batch is acked) and by an optional newline-delimited TCP listener
/// (<c>--tcp-lines PORT</c>, for rsyslog's omfwd). Prints one <c>[sink] complete</c> line with the wall-clock time
/// the last expected line arrived, so a script can time a run without polling precision mattering.
/// </summary>
public sealed class LogSink
{
    static readonly byte[] SeqTag = "seq="u8.ToArray();

    readonly Lock gate = new();
    readonly long expected;
    readonly bool[] seen;
    long distinct, duplicates, unnumbered, total, bytes;
    bool completed;
    DateTimeOffset? first;

    public LogSink(long expected)
    {
        this.expected = expected;
        seen = new bool[Math.Max(expected, 1)];
    }

    public bool Enabled => expected > 0;

    /// <summary>Counts one line (UTF-8, without its newline).</summary>
    public void Count(ReadOnlySpan<byte> line)
    {
        var at = line.IndexOf(SeqTag);
        long seq = -1;
        if (at >= 0)
        {
            var digits = line[(at + SeqTag.Length)..];
            var n = 0;
            while (n < digits.Length && digits[n] is >= (byte)'0' and <= (byte)'9') n++;
            if (n > 0) seq = long.Parse(Encoding.ASCII.GetString(digits[..n]), CultureInfo.InvariantCulture);
        }
        lock (gate)
        {
            first ??= DateTimeOffset.UtcNow;
            total++;
            bytes += line.Length + 1;
            if (seq < 0 || seq >= seen.Length) { unnumbered++; return; }
            if (seen[seq]) { duplicates++; return; }
            seen[seq] = true;
            if (++distinct == expected && !completed)
            {
                completed = true;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[sink] complete at_unix_ms={DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()} first_unix_ms={first.Value.ToUnixTimeMilliseconds()} lines={total} bytes={bytes} duplicates={duplicates}"));
            }
        }
    }

    public void Count(string line) => Count(Encoding.UTF8.GetBytes(line));

    public string Summary()
    {
        lock (gate)
            return string.Create(CultureInfo.InvariantCulture,
                $"[sink] totals: lines {total}, bytes {bytes}, distinct {distinct} of {expected}, missing {expected - distinct}, duplicates {duplicates}, unnumbered {unnumbered}");
    }
}

/// <summary>Accepts newline-delimited lines on 127.0.0.1:PORT (any number of connections) into the <see cref="LogSink"/>.</summary>
public sealed class TcpLineListener(LogSink sink, StubOptions options) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.TcpLinesPort <= 0) return;
        using var listener = new TcpListener(IPAddress.Loopback, options.TcpLinesPort);
        listener.Start();
        var connections = new List<Task>();
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var client = await listener.AcceptTcpClientAsync(stoppingToken);
                connections.Add(ReadAsync(client, stoppingToken));
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
        await Task.WhenAll(connections);
    }

    async Task ReadAsync(TcpClient client, CancellationToken cancellationToken)
    {
        using var _ = client;
        var reader = PipeReader.Create(client.GetStream(), new StreamPipeReaderOptions(bufferSize: 256 * 1024));
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync(cancellationToken);
                var buffer = result.Buffer;
                while (buffer.PositionOf((byte)'\n') is { } newline)
                {
                    var line = buffer.Slice(0, newline);
                    if (line.IsSingleSegment) sink.Count(line.FirstSpan); else sink.Count(line.ToArray());
                    buffer = buffer.Slice(buffer.GetPosition(1, newline));
                }
                reader.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted) break;
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
        catch (IOException) { }
        await reader.CompleteAsync();
    }
}
