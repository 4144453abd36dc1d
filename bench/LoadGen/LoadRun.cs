using System.Diagnostics;
using Fleet.Protocol.V1;
using Grpc.Net.Client;

namespace Fleet.Bench.LoadGen;

/// <summary>Starts the simulated agents in a ramp, reports every --report-every, and shuts down cleanly after --duration.</summary>
public sealed class LoadRun(LoadGenOptions options, TextWriter output)
{
    public async Task<int> RunAsync(CancellationToken stopEarly)
    {
        var clock = Stopwatch.StartNew();
        var startedAt = DateTimeOffset.UtcNow;
        var stats = new Stats(options.Agents, clock);
        using var meter = new ProcessMeter();

        // One HTTP/2 connection per simulated agent by default, like real agents; K agents share one with --agents-per-connection K.
        var channelCount = (options.Agents + options.AgentsPerConnection - 1) / options.AgentsPerConnection;
        var channels = new GrpcChannel[channelCount];
        var agents = new SimAgent[options.Agents];
        for (var i = 0; i < options.Agents; i++)
        {
            var c = i / options.AgentsPerConnection;
            channels[c] ??= CreateChannel(options.Coordinator);
            agents[i] = new SimAgent(i, new AgentGateway.AgentGatewayClient(channels[c]), options, stats);
        }

        output.WriteLine($"fleet-loadgen run {options.RunId}: {options.Agents} agents -> {options.Coordinator} over {channelCount} connection(s), " +
            $"ramp {options.RampPerSecond:0}/s, heartbeat {options.Heartbeat.TotalSeconds:0.###}s, " +
            $"batches {(options.BatchInterval > TimeSpan.Zero ? options.BatchInterval.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture) + "s" : "off")}, " +
            $"duration {options.Duration.TotalSeconds:0.#}s; gc {(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")}, {Environment.ProcessorCount} cpus");

        using var runCts = CancellationTokenSource.CreateLinkedTokenSource(stopEarly);
        var agentTasks = new List<Task>(options.Agents);
        var launcher = LaunchAsync(agents, agentTasks, clock, runCts.Token);

        var intervals = new List<IntervalReport>();
        var previous = stats.Snapshot();
        var previousCpu = meter.Sample();
        var previousAt = clock.Elapsed;
        var peakRss = previousCpu.RssBytes;
        var firstCpu = previousCpu;

        var nextReport = options.ReportEvery;
        while (true)
        {
            var until = nextReport < options.Duration ? nextReport : options.Duration;
            // Timers may fire a hair before the Stopwatch says the time has come; wait until it really has (bounded: each pass waits >= 1 ms).
            for (var wait = until - clock.Elapsed; wait > TimeSpan.Zero && !stopEarly.IsCancellationRequested; wait = until - clock.Elapsed)
            {
                await Task.Delay(wait + TimeSpan.FromMilliseconds(1), stopEarly).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
            var done = stopEarly.IsCancellationRequested || until >= options.Duration || clock.Elapsed >= options.Duration;

            var now = clock.Elapsed;
            var snapshot = stats.Snapshot();
            var cpu = meter.Sample();
            peakRss = Math.Max(peakRss, cpu.RssBytes);
            var report = Interval(previous, snapshot, previousCpu, cpu, previousAt, now);
            intervals.Add(report);
            output.WriteLine(report.ToLine(options.Agents));
            (previous, previousCpu, previousAt) = (snapshot, cpu, now);
            // Woke up late (a starved machine)? Skip the missed slots rather than emit near-empty intervals.
            while (nextReport <= now)
            {
                nextReport += options.ReportEvery;
            }
            if (done)
            {
                break;
            }
        }

        // Summary at the end of --duration, before the streams are closed.
        var elapsed = clock.Elapsed;
        var final = Summarize(stats.Snapshot(), stats, intervals, firstCpu, previousCpu, elapsed, startedAt, peakRss);
        output.WriteLine(final.ToText());

        // Then close every stream cleanly: stop starting agents, half-close each call, wait for the coordinator to end it.
        var shutdownClock = Stopwatch.StartNew();
        await runCts.CancelAsync();
        await launcher;
        var all = Task.WhenAll(agentTasks);
        await Task.WhenAny(all, Task.Delay(options.DrainTimeout + TimeSpan.FromSeconds(10), CancellationToken.None));
        var afterClose = stats.Snapshot();
        final.Shutdown = new ShutdownSummary(shutdownClock.Elapsed.TotalSeconds, afterClose.CleanCloses, afterClose.AbortedCloses, afterClose.ConnectedNow);
        output.WriteLine($"shutdown: {afterClose.CleanCloses} streams closed cleanly, {afterClose.AbortedCloses} aborted, {afterClose.ConnectedNow} still open, in {shutdownClock.Elapsed.TotalSeconds:0.0}s");
        foreach (var channel in channels)
        {
            channel.Dispose();
        }
        if (all.IsCompleted)
        {
            foreach (var agent in agents)
            {
                agent.Dispose();
            }
        }

        var everWelcomed = stats.AgentsEverWelcomed;
        final.ExitCode = everWelcomed < options.Agents ? 1 : 0;
        if (options.JsonOut is { } path)
        {
            await File.WriteAllTextAsync(path, final.ToJson(), CancellationToken.None);
            output.WriteLine($"summary written to {path}");
        }
        if (final.ExitCode != 0)
        {
            output.WriteLine($"FAILED: only {everWelcomed} of {options.Agents} agents ever connected (received Welcome) within {elapsed.TotalSeconds:0.0}s.");
        }
        return final.ExitCode;
    }

    /// <summary>Starts agent i at i / --ramp-per-second seconds.</summary>
    async Task LaunchAsync(SimAgent[] agents, List<Task> started, Stopwatch clock, CancellationToken token)
    {
        for (var i = 0; i < agents.Length && !token.IsCancellationRequested; i++)
        {
            var wait = TimeSpan.FromSeconds(i / options.RampPerSecond) - clock.Elapsed;
            if (wait > TimeSpan.FromMilliseconds(1))
            {
                await Task.Delay(wait, token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                if (token.IsCancellationRequested)
                {
                    break;
                }
            }
            var agent = agents[i];
            started.Add(Task.Run(() => agent.RunAsync(token), CancellationToken.None));
        }
    }

    static GrpcChannel CreateChannel(Uri address)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            // With --agents-per-connection above the server's stream limit (Kestrel: 100), open more connections instead of queueing.
            EnableMultipleHttp2Connections = true,
        };
        return GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }

    static IntervalReport Interval(StatsSnapshot before, StatsSnapshot now, ProcessSample cpuBefore, ProcessSample cpuNow, TimeSpan from, TimeSpan to)
    {
        var seconds = Math.Max((to - from).TotalSeconds, 1e-3);
        var ack = LatencyHistogram.Delta(now.AckLatency, before.AckLatency);
        var welcome = LatencyHistogram.Delta(now.WelcomeLatency, before.WelcomeLatency);
        var errors = now.Errors
            .Select(e => (e.Key, Value: e.Value - before.Errors.GetValueOrDefault(e.Key)))
            .Where(e => e.Value > 0)
            .ToDictionary(e => e.Key, e => e.Value, StringComparer.Ordinal);
        var cpuSeconds = cpuNow.CpuSeconds - cpuBefore.CpuSeconds;
        return new IntervalReport(
            ElapsedSeconds: to.TotalSeconds,
            IntervalSeconds: seconds,
            ConnectedStreams: now.ConnectedNow,
            AgentsEverWelcomed: now.AgentsEverWelcomed,
            Welcomes: now.Welcomes,
            HeartbeatsPerSecond: (now.HeartbeatsSent - before.HeartbeatsSent) / seconds,
            BatchesPerSecond: (now.BatchesSent + now.BatchesResent - before.BatchesSent - before.BatchesResent) / seconds,
            AcksPerSecond: (now.Acks - before.Acks) / seconds,
            Rejects: now.Rejects,
            AckLatencyP50Ms: LatencyHistogram.PercentileMs(ack, 0.50),
            AckLatencyP99Ms: LatencyHistogram.PercentileMs(ack, 0.99),
            WelcomeLatencyP50Ms: LatencyHistogram.PercentileMs(welcome, 0.50),
            WelcomeLatencyP99Ms: LatencyHistogram.PercentileMs(welcome, 0.99),
            ErrorsInInterval: errors,
            LoadGenCpuPercent: 100 * cpuSeconds / seconds,
            LoadGenCpuSeconds: cpuNow.CpuSeconds,
            LoadGenRssMb: cpuNow.RssBytes / 1048576.0,
            LoadGenGcHeapMb: cpuNow.GcHeapBytes / 1048576.0,
            LoadGenGcPauseMs: (cpuNow.GcPause - cpuBefore.GcPause).TotalMilliseconds,
            LoadGenThreadPoolThreads: cpuNow.Threads,
            LoadGenThreadPoolQueue: cpuNow.ThreadPoolQueue);
    }

    FinalSummary Summarize(StatsSnapshot s, Stats stats, List<IntervalReport> intervals, ProcessSample firstCpu, ProcessSample lastCpu,
        TimeSpan elapsed, DateTimeOffset startedAt, long peakRss)
    {
        var allConnectedAt = stats.AllWelcomedAt;
        var seconds = Math.Max(elapsed.TotalSeconds, 1e-3);
        var cpuSeconds = lastCpu.CpuSeconds - firstCpu.CpuSeconds;
        var whole = new RateSummary(seconds, s.HeartbeatsSent / seconds, (s.BatchesSent + s.BatchesResent) / seconds, s.Acks / seconds, 100 * cpuSeconds / seconds);

        // Steady state: the report intervals that began after the last agent got its first Welcome.
        RateSummary? steady = null;
        if (allConnectedAt is { } at)
        {
            var after = intervals.Where(i => i.ElapsedSeconds - i.IntervalSeconds >= at.TotalSeconds - 1e-6).ToList();
            var sec = after.Sum(i => i.IntervalSeconds);
            if (sec > 0)
            {
                steady = new RateSummary(
                    sec,
                    after.Sum(i => i.HeartbeatsPerSecond * i.IntervalSeconds) / sec,
                    after.Sum(i => i.BatchesPerSecond * i.IntervalSeconds) / sec,
                    after.Sum(i => i.AcksPerSecond * i.IntervalSeconds) / sec,
                    after.Sum(i => i.LoadGenCpuPercent * i.IntervalSeconds) / sec);
            }
        }

        return new FinalSummary(
            RunId: options.RunId,
            Coordinator: options.Coordinator.ToString(),
            Agents: options.Agents,
            AgentsPerConnection: options.AgentsPerConnection,
            DurationSeconds: options.Duration.TotalSeconds,
            HeartbeatSeconds: options.Heartbeat.TotalSeconds,
            BatchIntervalSeconds: options.BatchInterval > TimeSpan.Zero ? options.BatchInterval.TotalSeconds : null,
            RampPerSecond: options.RampPerSecond,
            StartedAt: startedAt,
            ElapsedSeconds: elapsed.TotalSeconds,
            AllConnectedAtSeconds: allConnectedAt?.TotalSeconds,
            AgentsEverWelcomed: s.AgentsEverWelcomed,
            ConnectedAtEnd: s.ConnectedNow,
            ConnectAttempts: s.ConnectAttempts,
            Welcomes: s.Welcomes,
            HeartbeatsSent: s.HeartbeatsSent,
            BatchesSent: s.BatchesSent,
            BatchesResent: s.BatchesResent,
            Acks: s.Acks,
            AckUnknownKeys: s.AckUnknownKeys,
            Rejects: s.Rejects,
            PendingDropped: s.PendingDropped,
            UnexpectedMessages: s.UnexpectedMessages,
            TasksAnswered: stats.TasksAnswered,
            Errors: s.Errors,
            ErrorSamples: stats.ErrorSamples,
            AckLatency: LatencySummary.From(s.AckLatency),
            WelcomeLatency: LatencySummary.From(s.WelcomeLatency),
            WholeRun: whole,
            AfterAllConnected: steady,
            LoadGenCpuSeconds: cpuSeconds,
            LoadGenCpuPercentAverage: 100 * cpuSeconds / seconds,
            LoadGenPeakRssMb: Math.Max(peakRss, ProcessMeter.PeakRssBytes() ?? 0) / 1048576.0,
            Intervals: intervals);
    }
}
