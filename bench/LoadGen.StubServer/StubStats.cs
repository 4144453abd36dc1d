using System.Diagnostics;
using System.Globalization;

namespace Fleet.Bench.LoadGen.StubServer;

public sealed class StubStats
{
    long _open;
    long _hellos;
    long _closed;
    long _heartbeats;
    long _batches;
    long _acks;
    long _rejects;
    long _protocolErrors;

    public void StreamOpened()
    {
        Interlocked.Increment(ref _open);
        Interlocked.Increment(ref _hellos);
    }
    public void StreamClosed()
    {
        Interlocked.Decrement(ref _open);
        Interlocked.Increment(ref _closed);
    }
    public void Heartbeat() => Interlocked.Increment(ref _heartbeats);
    public void Batch() => Interlocked.Increment(ref _batches);
    public void Ack() => Interlocked.Increment(ref _acks);
    public void Reject() => Interlocked.Increment(ref _rejects);
    public void ProtocolError() => Interlocked.Increment(ref _protocolErrors);

    public (long Open, long Hellos, long Closed, long Heartbeats, long Batches, long Acks, long Rejects, long ProtocolErrors) Read() =>
        (Interlocked.Read(ref _open), Interlocked.Read(ref _hellos), Interlocked.Read(ref _closed), Interlocked.Read(ref _heartbeats),
         Interlocked.Read(ref _batches), Interlocked.Read(ref _acks), Interlocked.Read(ref _rejects), Interlocked.Read(ref _protocolErrors));
}

/// <summary>Prints the stub's traffic and its own CPU / RSS every --report-every, and totals on shutdown.</summary>
public sealed class StubReporter(StubStats stats, StubOptions options, LogSink sink) : BackgroundService
{
    readonly Stopwatch _clock = Stopwatch.StartNew();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var process = Process.GetCurrentProcess();
        var before = stats.Read();
        var cpuBefore = process.TotalProcessorTime;
        var at = _clock.Elapsed;
        var gcBefore = GC.GetTotalPauseDuration();
        using var timer = new PeriodicTimer(options.ReportEvery);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await timer.WaitForNextTickAsync(stoppingToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            process.Refresh();
            var now = stats.Read();
            var cpu = process.TotalProcessorTime;
            var t = _clock.Elapsed;
            var gc = GC.GetTotalPauseDuration();
            var s = (t - at).TotalSeconds;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"[stub {t.TotalSeconds,6:0.0}s] streams {now.Open} (hellos {now.Hellos}, closed {now.Closed}) | hb {(now.Heartbeats - before.Heartbeats) / s:0.0}/s " +
                $"batches {(now.Batches - before.Batches) / s:0.0}/s acks {(now.Acks - before.Acks) / s:0.0}/s rejects {now.Rejects} protocol errors {now.ProtocolErrors} " +
                $"| stub cpu {100 * (cpu - cpuBefore).TotalSeconds / s:0.0}% ({cpu.TotalSeconds:0.00}s) rss {process.WorkingSet64 / 1048576.0:0}MB " +
                $"gc-pause {(gc - gcBefore).TotalMilliseconds:0}ms pool {ThreadPool.ThreadCount}t/{ThreadPool.PendingWorkItemCount}q"));
            (before, cpuBefore, at, gcBefore) = (now, cpu, t, gc);
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        using var process = Process.GetCurrentProcess();
        var now = stats.Read();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"[stub] totals: hellos {now.Hellos}, closed {now.Closed}, heartbeats {now.Heartbeats}, batches {now.Batches}, acks {now.Acks}, rejects {now.Rejects}, " +
            $"protocol errors {now.ProtocolErrors}; cpu {process.TotalProcessorTime.TotalSeconds:0.00}s over {_clock.Elapsed.TotalSeconds:0.0}s, peak rss {process.PeakWorkingSet64 / 1048576.0:0}MB"));
        if (sink.Enabled) Console.WriteLine(sink.Summary());
    }
}
