using Fleet.Agent.Collectors;
using Fleet.Agent.Configuration;
using Fleet.Agent.Outbox;
using Fleet.Agent.Probes;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Agent.Metrics;

/// <summary>
/// Runs every enabled collector and probe on its own interval and writes what they produce to the durable outbox
/// as one metric batch per flush interval, so a coordinator outage loses nothing up to the outbox's bound. A full
/// batch, and the samples of a collection triggered by a change of a watched source, are written at once.
/// </summary>
public sealed partial class MetricsPipeline(
    AgentOptions options,
    CentralConfig central,
    DurableOutbox outbox,
    TimeProvider time,
    ILoggerFactory loggers,
    ILogger<MetricsPipeline> logger) : BackgroundService
{
    /// <summary>Flush early when this many samples are waiting (bounds a batch's size).</summary>
    const int MaxSamplesPerBatch = 5_000;

    readonly Lock gate = new();
    List<MetricSample> samples = [];
    List<ProbeResult> probes = [];
    readonly SemaphoreSlim flushNow = new(0, 1);

    /// <summary>The time of the latest flush's own samples; each flush gets a later millisecond (under <see cref="gate"/>).</summary>
    long lastFlushUnixMs = long.MinValue;

    readonly Dictionary<string, CollectorRunner> collectors = new(StringComparer.Ordinal);

    public long BatchesWritten { get; private set; }

    /// <summary>The interval each collector runs at now (local, or overridden centrally).</summary>
    public IReadOnlyDictionary<string, TimeSpan> Intervals
    {
        get { lock (collectors) return collectors.ToDictionary(c => c.Key, c => c.Value.Interval, StringComparer.Ordinal); }
    }

    /// <summary>Central intervals override the local ones for the collectors they name; the others go back to local.</summary>
    void ApplyCentral(AgentConfig config)
    {
        lock (collectors)
            foreach (var (name, runner) in collectors)
            {
                TimeSpan? central = config.CollectorIntervals.TryGetValue(name, out var d) ? d.ToTimeSpan() : null;
                if (runner.Interval == (central ?? options.Collectors[name].Interval)) continue;
                runner.SetInterval(central);
                LogInterval(name, runner.Interval.TotalSeconds, central is null ? "agent config" : "coordinator");
            }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var runners = new List<Task>();
        var created = new List<IProbe>();
        foreach (var (name, settings) in options.Collectors)
        {
            var collector = CollectorRegistry.Default.Create(name, settings);
            var runner = new CollectorRunner(collector, settings, AddSamplesAsync, time, loggers.CreateLogger("Fleet.Agent.Collectors." + name), FlushSoon);
            collectors[name] = runner;
            runners.Add(RunQuietlyAsync(runner.RunAsync, stoppingToken));
        }
        central.Changed += ApplyCentral;
        ApplyCentral(central.Current);
        foreach (var settings in options.Probes)
        {
            var probe = ProbeRegistry.Default.Create(settings, time);
            created.Add(probe);
            var runner = new ProbeRunner(probe, settings.Interval, AddProbeAsync, time, loggers.CreateLogger<ProbeRunner>());
            runners.Add(RunQuietlyAsync(runner.RunAsync, stoppingToken));
        }
        LogStarted(options.Collectors.Count, options.Probes.Count, options.MetricsFlushInterval.TotalSeconds);

        using var timer = new PeriodicTimer(options.MetricsFlushInterval, time);
        try
        {
            // One pending wait of each kind, kept across iterations: a periodic timer takes one waiter at a time, and a
            // semaphore wait left behind would swallow the next "flush now".
            var tick = timer.WaitForNextTickAsync(stoppingToken).AsTask();
            var nudge = flushNow.WaitAsync(stoppingToken);
            while (true)
            {
                if (await Task.WhenAny(tick, nudge) == tick)
                {
                    if (!await tick) break;
                    tick = timer.WaitForNextTickAsync(stoppingToken).AsTask();
                }
                else
                {
                    await nudge;
                    // At most one early flush per MinNudgeGap: a .prom file rewritten many times a second must not turn every
                    // collection into an outbox record and an ingest transaction. Nudges meanwhile fold into this one.
                    var since = time.GetElapsedTime(lastNudged);
                    if (lastNudged != 0 && since < MinNudgeGap) await Task.Delay(MinNudgeGap - since, time, stoppingToken);
                    lastNudged = time.GetTimestamp();
                    nudge = flushNow.WaitAsync(stoppingToken);
                }
                await FlushAsync(CancellationToken.None);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
        central.Changed -= ApplyCentral;
        await Task.WhenAll(runners);
        await FlushAsync(CancellationToken.None); // what was collected before the stop still goes to the outbox
        foreach (var probe in created)
        {
            if (probe is IAsyncDisposable asyncDisposable) await asyncDisposable.DisposeAsync();
            else if (probe is IDisposable disposable) disposable.Dispose();
        }
    }

    static async Task RunQuietlyAsync(Func<CancellationToken, Task> run, CancellationToken cancellationToken)
    {
        try { await run(cancellationToken); }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
    }

    ValueTask AddSamplesAsync(IReadOnlyList<MetricSample> batch, CancellationToken cancellationToken)
    {
        bool full;
        lock (gate)
        {
            samples.AddRange(batch);
            full = samples.Count >= MaxSamplesPerBatch;
        }
        if (full) FlushSoon();
        return ValueTask.CompletedTask;
    }

    /// <summary>Writes what is waiting to the outbox now rather than at the next flush tick: when a batch is full, and
    /// after a collection triggered by a change (the textfile watch), so a changed value is sent at once.</summary>
    /// <summary>Early flushes (a full batch, a changed textfile) come at most this often.</summary>
    internal static readonly TimeSpan MinNudgeGap = TimeSpan.FromMilliseconds(200);
    long lastNudged;

    void FlushSoon()
    {
        if (flushNow.CurrentCount != 0) return;
        try { flushNow.Release(); } catch (SemaphoreFullException) { }
    }

    ValueTask AddProbeAsync(ProbeResult result, CancellationToken cancellationToken)
    {
        lock (gate) probes.Add(result);
        return ValueTask.CompletedTask;
    }

    /// <summary>Room left in a message for the envelope around a metric batch (message and batch tags, key, time).</summary>
    const int EnvelopeBytes = 1024;

    /// <summary>Writes what is waiting as batches that each fit <see cref="AgentOptions.MaxMessageBytes"/> (usually
    /// one); returns false when there was nothing.</summary>
    public async Task<bool> FlushAsync(CancellationToken cancellationToken)
    {
        List<MetricSample> s;
        List<ProbeResult> p;
        long flushUnixMs;
        lock (gate)
        {
            if (samples.Count == 0 && probes.Count == 0) return false;
            (s, samples) = (samples, []);
            (p, probes) = (probes, []);
            // Two flushes can fall in one millisecond ("flush now" right before a tick), and the coordinator keys
            // samples by (agent, name, labels, time): the outbox samples of each flush get their own.
            flushUnixMs = lastFlushUnixMs = Math.Max(time.GetUtcNow().ToUnixTimeMilliseconds(), lastFlushUnixMs + 1);
        }
        if (s.Count > 0) AddOutboxSamples(s, flushUnixMs);
        foreach (var metrics in Split(s, p, options.MaxMessageBytes - EnvelopeBytes))
        {
            var batch = new Batch { CreatedAt = Timestamp.FromDateTimeOffset(time.GetUtcNow()), Metrics = metrics };
            var result = await outbox.AppendAsync(batch.ToByteArray(), cancellationToken);
            if (result.Status == AppendStatus.Dropped) LogDropped(metrics.Samples.Count, metrics.Probes.Count, result.Reason);
            else BatchesWritten++;
        }
        return true;
    }

    /// <summary>The outbox's own state with every flush: <c>agent.outbox.dropped_records</c> (a counter since the agent
    /// started; what was lost to the size bound, a full disk or damage), <c>agent.outbox.pending_records</c> and
    /// <c>agent.outbox.pending_bytes</c> (the backlog waiting for the coordinator).</summary>
    void AddOutboxSamples(List<MetricSample> s, long timeUnixMs)
    {
        s.Add(new MetricSample { Name = "agent.outbox.dropped_records", Value = outbox.DroppedRecords, TimeUnixMs = timeUnixMs });
        s.Add(new MetricSample { Name = "agent.outbox.pending_records", Value = outbox.PendingRecords, TimeUnixMs = timeUnixMs });
        s.Add(new MetricSample { Name = "agent.outbox.pending_bytes", Value = outbox.PendingBytes, TimeUnixMs = timeUnixMs });
    }

    /// <summary>The samples and probe results as metric batches of at most <paramref name="maxBytes"/> each (a single
    /// item larger than that goes alone).</summary>
    internal static List<MetricBatch> Split(IReadOnlyList<MetricSample> samples, IReadOnlyList<ProbeResult> probes, int maxBytes)
    {
        var batches = new List<MetricBatch>();
        var current = new MetricBatch();
        var size = 0;
        void Add(IMessage item, Action<MetricBatch> add)
        {
            var itemSize = 1 + CodedOutputStream.ComputeMessageSize(item); // field tag + length-prefixed item
            if (size > 0 && size + itemSize > maxBytes)
            {
                batches.Add(current);
                current = new MetricBatch();
                size = 0;
            }
            add(current);
            size += itemSize;
        }
        foreach (var sample in samples) Add(sample, b => b.Samples.Add(sample));
        foreach (var probe in probes) Add(probe, b => b.Probes.Add(probe));
        if (size > 0) batches.Add(current);
        return batches;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Metrics: {Collectors} collectors and {Probes} probes running, flushing every {Seconds} s")]
    partial void LogStarted(int collectors, int probes, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Collector {Collector} now runs every {Seconds} s (from the {Source})")]
    partial void LogInterval(string collector, double seconds, string source);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Metrics batch of {Samples} samples and {Probes} probe results dropped: {Reason}")]
    partial void LogDropped(int samples, int probes, string? reason);
}
