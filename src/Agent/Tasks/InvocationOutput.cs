using System.Text;
using Fleet.Protocol.V1;

namespace Fleet.Agent.Tasks;

/// <summary>
/// The combined output of one invocation. Text is masked line by line (an incomplete last line is held back, up to
/// <see cref="HoldBackChars"/>, so a secret split across reads is still caught), counted in UTF-8 bytes and sent as
/// TaskOutput chunks with their byte offsets: every <see cref="FlushInterval"/> or once <see cref="ChunkBytes"/> wait.
/// </summary>
public sealed class InvocationOutput : IAsyncDisposable
{
    public const int ChunkBytes = 32 * 1024;
    public const int HoldBackChars = 16 * 1024;
    public static readonly TimeSpan FlushInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>At most this many chunks per outbox batch.</summary>
    const int ChunksPerBatch = 8;

    static readonly UTF8Encoding Utf8 = new(false);

    readonly string invocationId;
    readonly TaskUpdatePublisher publisher;
    readonly SecretMasker masker;
    readonly Lock gate = new();
    readonly SemaphoreSlim flushing = new(1, 1);
    readonly StringBuilder partialLine = new();
    readonly CancellationTokenSource stop = new();
    readonly Task timerLoop;
    MemoryStream pending = new();
    ulong sent;
    bool completed;

    public InvocationOutput(string invocationId, TaskUpdatePublisher publisher, SecretMasker masker)
    {
        this.invocationId = invocationId;
        this.publisher = publisher;
        this.masker = masker;
        timerLoop = FlushPeriodicallyAsync();
    }

    /// <summary>Bytes handed to the outbox so far (after <see cref="CompleteAsync"/>: the whole output).</summary>
    public ulong Bytes { get { lock (gate) return sent; } }

    /// <summary>Appends raw output (any piece: partial lines are fine).</summary>
    public async ValueTask WriteAsync(string text, CancellationToken cancellationToken)
    {
        bool full;
        lock (gate)
        {
            if (completed) return;
            partialLine.Append(text);
            var lastNewline = LastIndexOf(partialLine, '\n');
            if (lastNewline >= 0)
            {
                var complete = partialLine.ToString(0, lastNewline + 1);
                partialLine.Remove(0, lastNewline + 1);
                Emit(complete);
            }
            if (partialLine.Length > HoldBackChars)
            {
                Emit(partialLine.ToString());
                partialLine.Clear();
            }
            full = pending.Length >= ChunkBytes;
        }
        if (full) await FlushAsync(CancellationToken.None);
    }

    public ValueTask WriteLineAsync(string line, CancellationToken cancellationToken) => WriteAsync(line + "\n", cancellationToken);

    /// <summary>Sends what is held back and pending; later writes are ignored.</summary>
    public async Task CompleteAsync()
    {
        lock (gate)
        {
            if (!completed && partialLine.Length > 0)
            {
                Emit(partialLine.ToString());
                partialLine.Clear();
            }
            completed = true;
        }
        await stop.CancelAsync();
        try { await timerLoop; } catch (OperationCanceledException) { }
        await FlushAsync(CancellationToken.None);
    }

    void Emit(string text)
    {
        var masked = masker.Apply(text);
        var bytes = Utf8.GetBytes(masked);
        pending.Write(bytes);
    }

    async Task FlushAsync(CancellationToken cancellationToken)
    {
        await flushing.WaitAsync(cancellationToken);
        try
        {
            byte[] data;
            ulong offset;
            lock (gate)
            {
                if (pending.Length == 0) return;
                data = pending.ToArray();
                pending = new MemoryStream();
                offset = sent;
                sent += (ulong)data.Length;
            }
            var updates = new List<TaskUpdate>();
            for (var at = 0; at < data.Length; at += ChunkBytes)
            {
                var length = Math.Min(ChunkBytes, data.Length - at);
                var update = publisher.Update(invocationId);
                update.Output = new TaskOutput { Offset = offset + (ulong)at, Data = Google.Protobuf.ByteString.CopyFrom(data, at, length) };
                updates.Add(update);
                if (updates.Count == ChunksPerBatch)
                {
                    await publisher.PublishAsync(updates, cancellationToken);
                    updates = [];
                }
            }
            await publisher.PublishAsync(updates, cancellationToken);
        }
        finally
        {
            flushing.Release();
        }
    }

    async Task FlushPeriodicallyAsync()
    {
        await Task.Yield();
        using var timer = new PeriodicTimer(FlushInterval, publisher.Time);
        while (await timer.WaitForNextTickAsync(stop.Token))
            await FlushAsync(CancellationToken.None);
    }

    static int LastIndexOf(StringBuilder builder, char c)
    {
        for (var i = builder.Length - 1; i >= 0; i--)
            if (builder[i] == c) return i;
        return -1;
    }

    public async ValueTask DisposeAsync()
    {
        if (!stop.IsCancellationRequested) await stop.CancelAsync();
        try { await timerLoop; } catch (OperationCanceledException) { }
        stop.Dispose();
        flushing.Dispose();
        await pending.DisposeAsync();
    }
}
