using System.Collections.Concurrent;
using Fleet.Agent.Probes;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Agent.Tests.Probes;

public sealed class ProbeRunnerTests
{
    static readonly TimeSpan Interval = TimeSpan.FromSeconds(30);

    readonly FakeTimeProvider time = new(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));
    readonly ConcurrentQueue<ProbeResult> results = new();

    ProbeRunner Runner(IProbe probe, Func<ProbeResult, CancellationToken, ValueTask>? sink = null) =>
        new(probe, Interval, sink ?? ((result, _) => { results.Enqueue(result); return ValueTask.CompletedTask; }), time, NullLogger<ProbeRunner>.Instance);

    [Fact]
    public async Task Runner_RunsAtStart_AndOnEveryInterval()
    {
        var probe = new ScriptedProbe(time);
        using var stop = new CancellationTokenSource();
        var running = Runner(probe).RunAsync(stop.Token);

        await Eventually.UntilAsync(() => results.Count == 1, "the first run");
        time.Advance(Interval - TimeSpan.FromSeconds(1));
        Assert.Single(results);
        time.Advance(TimeSpan.FromSeconds(1));
        await Eventually.UntilAsync(() => results.Count == 2, "the run at 30 s");
        time.Advance(Interval);
        await Eventually.UntilAsync(() => results.Count == 3, "the run at 60 s");

        await stop.CancelAsync();
        await running.DefaultTimeout();
        Assert.Equal([0L, 30_000L, 60_000L], results.Select(r => r.TimeUnixMs - time.Start.ToUnixTimeMilliseconds()));
    }

    [Fact]
    public async Task Runner_NeverOverlaps_AndSkipsTheTicksASlowRunMissed()
    {
        var probe = new ScriptedProbe(time) { Blocking = true };
        using var stop = new CancellationTokenSource();
        var runner = Runner(probe);
        var running = runner.RunAsync(stop.Token);

        await Eventually.UntilAsync(() => probe.Calls == 1, "the first run to start");
        time.Advance(TimeSpan.FromSeconds(75));             // ticks at 30 s and 60 s pass while the first run hangs
        Assert.Equal(1, probe.Calls);
        Assert.Empty(results);

        probe.Blocking = false;
        probe.ReleaseOne();                                  // the first run ends at 75 s
        await Eventually.UntilAsync(() => results.Count == 1, "the first result");
        Assert.Equal(2, runner.Skipped);
        time.Advance(TimeSpan.FromSeconds(14));              // 89 s: the next tick (90 s) has not come
        Assert.Equal(1, probe.Calls);
        time.Advance(TimeSpan.FromSeconds(1));               // 90 s
        await Eventually.UntilAsync(() => results.Count == 2, "the run at the 90 s tick");

        await stop.CancelAsync();
        await running.DefaultTimeout();
        Assert.Equal(1, probe.MaxConcurrent);
        Assert.Equal(2, runner.Runs);
        Assert.Equal(90_000L, results.Last().TimeUnixMs - time.Start.ToUnixTimeMilliseconds());
    }

    [Fact]
    public async Task Runner_TurnsAProbeThatThrowsIntoAFailedResult()
    {
        var probe = new ScriptedProbe(time) { Throw = new InvalidOperationException("bug in a probe") };
        using var stop = new CancellationTokenSource();
        var running = Runner(probe).RunAsync(stop.Token);

        await Eventually.UntilAsync(() => results.Count == 1, "the first result");
        await stop.CancelAsync();
        await running.DefaultTimeout();

        var result = Assert.Single(results);
        Assert.False(result.Ok);
        Assert.Equal("probe error: bug in a probe", result.Reason);
        Assert.Equal("scripted", result.Name);
    }

    [Fact]
    public async Task Runner_KeepsRunning_WhenTheSinkFails()
    {
        var probe = new ScriptedProbe(time);
        var handed = 0;
        using var stop = new CancellationTokenSource();
        var running = Runner(probe, (result, _) =>
        {
            if (Interlocked.Increment(ref handed) == 1) throw new IOException("outbox full");
            results.Enqueue(result);
            return ValueTask.CompletedTask;
        }).RunAsync(stop.Token);

        await Eventually.UntilAsync(() => Volatile.Read(ref handed) == 1, "the first hand-off");
        time.Advance(Interval);
        await Eventually.UntilAsync(() => results.Count == 1, "the second result");

        await stop.CancelAsync();
        await running.DefaultTimeout();
        Assert.Equal(2, probe.Calls);
    }

    [Fact]
    public async Task Runner_Stops_WhenCancelledDuringARun()
    {
        var probe = new ScriptedProbe(time) { Blocking = true };
        using var stop = new CancellationTokenSource();
        var running = Runner(probe).RunAsync(stop.Token);

        await Eventually.UntilAsync(() => probe.Calls == 1, "the first run to start");
        await stop.CancelAsync();
        await running.DefaultTimeout();

        Assert.True(running.IsCompletedSuccessfully);
        Assert.Empty(results);
    }

    /// <summary>A probe whose runs succeed at once, throw, or hang until released (or cancelled); counts overlap.</summary>
    sealed class ScriptedProbe(TimeProvider time) : IProbe
    {
        readonly SemaphoreSlim release = new(0);
        int calls;
        int active;
        int maxConcurrent;

        public string Name => "scripted";
        public string Kind => "test";
        public string Target => "nowhere";
        public volatile bool Blocking;
        public Exception? Throw { get; init; }
        public int Calls => Volatile.Read(ref calls);
        public int MaxConcurrent => Volatile.Read(ref maxConcurrent);

        public void ReleaseOne() => release.Release();

        public async ValueTask<ProbeResult> RunAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref calls);
            var now = Interlocked.Increment(ref active);
            InterlockedMax(ref maxConcurrent, now);
            try
            {
                var startedAt = time.GetUtcNow();
                if (Throw is not null) throw Throw;
                if (Blocking) await release.WaitAsync(cancellationToken);
                return new ProbeResult { Name = Name, Kind = Kind, Target = Target, Ok = true, TimeUnixMs = startedAt.ToUnixTimeMilliseconds() };
            }
            finally
            {
                Interlocked.Decrement(ref active);
            }
        }

        static void InterlockedMax(ref int target, int value)
        {
            int seen;
            while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
        }
    }
}
