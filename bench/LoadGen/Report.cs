using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Fleet.Bench.LoadGen;

/// <summary>One --report-every interval (rates are per second over the interval).</summary>
public sealed record IntervalReport(
    double ElapsedSeconds,
    double IntervalSeconds,
    long ConnectedStreams,
    long AgentsEverWelcomed,
    long Welcomes,
    double HeartbeatsPerSecond,
    double BatchesPerSecond,
    double AcksPerSecond,
    long Rejects,
    double? AckLatencyP50Ms,
    double? AckLatencyP99Ms,
    double? WelcomeLatencyP50Ms,
    double? WelcomeLatencyP99Ms,
    IReadOnlyDictionary<string, long> ErrorsInInterval,
    double LoadGenCpuPercent,
    double LoadGenCpuSeconds,
    double LoadGenRssMb,
    double LoadGenGcHeapMb,
    double LoadGenGcPauseMs,
    int LoadGenThreadPoolThreads,
    long LoadGenThreadPoolQueue)
{
    public string ToLine(int agents)
    {
        var sb = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        sb.Append(c, $"[{ElapsedSeconds,6:0.0}s] streams {ConnectedStreams}/{agents} (ever {AgentsEverWelcomed}) welcomes {Welcomes}");
        sb.Append(c, $" | hb {HeartbeatsPerSecond:0.0}/s batches {BatchesPerSecond:0.0}/s acks {AcksPerSecond:0.0}/s rejects {Rejects}");
        sb.Append(c, $" | ack p50/p99 {Ms(AckLatencyP50Ms)}/{Ms(AckLatencyP99Ms)}");
        if (WelcomeLatencyP50Ms is not null)
        {
            sb.Append(c, $" welcome p50/p99 {Ms(WelcomeLatencyP50Ms)}/{Ms(WelcomeLatencyP99Ms)}");
        }
        sb.Append(" | errors ");
        sb.Append(ErrorsInInterval.Count == 0 ? "0" : string.Join(' ', ErrorsInInterval.Select(e => $"{e.Key}={e.Value}")));
        sb.Append(c, $" | loadgen cpu {LoadGenCpuPercent:0.0}% ({LoadGenCpuSeconds:0.00}s) rss {LoadGenRssMb:0}MB heap {LoadGenGcHeapMb:0}MB gc-pause {LoadGenGcPauseMs:0}ms pool {LoadGenThreadPoolThreads}t/{LoadGenThreadPoolQueue}q");
        return sb.ToString();
    }

    internal static string Ms(double? ms) => ms is null ? "-" : ms.Value.ToString(ms.Value < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture) + "ms";
}

public sealed record RateSummary(double Seconds, double HeartbeatsPerSecond, double BatchesPerSecond, double AcksPerSecond, double LoadGenCpuPercent);

public sealed record LatencySummary(long Count, double? P50Ms, double? P90Ms, double? P99Ms, double? P999Ms, double? MaxBucketMs)
{
    public static LatencySummary From(long[] counts) =>
        new(LatencyHistogram.Count(counts), LatencyHistogram.PercentileMs(counts, 0.50), LatencyHistogram.PercentileMs(counts, 0.90),
            LatencyHistogram.PercentileMs(counts, 0.99), LatencyHistogram.PercentileMs(counts, 0.999), LatencyHistogram.PercentileMs(counts, 1.0));

    public override string ToString() =>
        Count == 0 ? "no samples" : $"n={Count} p50 {IntervalReport.Ms(P50Ms)} p90 {IntervalReport.Ms(P90Ms)} p99 {IntervalReport.Ms(P99Ms)} p99.9 {IntervalReport.Ms(P999Ms)} max~{IntervalReport.Ms(MaxBucketMs)}";
}

public sealed record ShutdownSummary(double Seconds, long CleanCloses, long AbortedCloses, long StillConnected);

public sealed record FinalSummary(
    string RunId,
    string Coordinator,
    int Agents,
    int AgentsPerConnection,
    double DurationSeconds,
    double HeartbeatSeconds,
    double? BatchIntervalSeconds,
    double RampPerSecond,
    DateTimeOffset StartedAt,
    double ElapsedSeconds,
    double? AllConnectedAtSeconds,
    long AgentsEverWelcomed,
    long ConnectedAtEnd,
    long ConnectAttempts,
    long Welcomes,
    long HeartbeatsSent,
    long BatchesSent,
    long BatchesResent,
    long Acks,
    long AckUnknownKeys,
    long Rejects,
    long PendingDropped,
    long UnexpectedMessages,
    long TasksAnswered,
    IReadOnlyDictionary<string, long> Errors,
    IReadOnlyDictionary<string, string> ErrorSamples,
    LatencySummary AckLatency,
    LatencySummary WelcomeLatency,
    RateSummary WholeRun,
    RateSummary? AfterAllConnected,
    double LoadGenCpuSeconds,
    double LoadGenCpuPercentAverage,
    double LoadGenPeakRssMb,
    IReadOnlyList<IntervalReport> Intervals)
{
    public ShutdownSummary? Shutdown { get; set; }
    public int ExitCode { get; set; }

    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public string ToText()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("==== fleet-loadgen summary ====");
        sb.AppendLine(c, $"run {RunId} -> {Coordinator}: {Agents} agents ({AgentsPerConnection}/connection), heartbeat {HeartbeatSeconds:0.###}s, batches {(BatchIntervalSeconds is { } b ? b.ToString("0.###", c) + "s" : "off")}, ramp {RampPerSecond:0}/s");
        sb.AppendLine(c, $"elapsed {ElapsedSeconds:0.0}s; all {Agents} connected at {(AllConnectedAtSeconds is { } a ? a.ToString("0.0", c) + "s" : "never")}");
        sb.AppendLine(c, $"agents ever welcomed {AgentsEverWelcomed}/{Agents}, connected at end {ConnectedAtEnd}, connect attempts {ConnectAttempts}, welcomes {Welcomes}");
        sb.AppendLine(c, $"heartbeats {HeartbeatsSent}, batches {BatchesSent} (+{BatchesResent} resent), acks {Acks} (unknown keys {AckUnknownKeys}), rejects {Rejects}, dropped unacked {PendingDropped}, unexpected messages {UnexpectedMessages}, tasks answered {TasksAnswered}");
        sb.AppendLine(c, $"rates, whole run:          {Rates(WholeRun)}");
        if (AfterAllConnected is not null)
        {
            sb.AppendLine(c, $"rates, after all connected: {Rates(AfterAllConnected)}");
        }
        sb.AppendLine(c, $"ack latency (send -> Ack):     {AckLatency}");
        sb.AppendLine(c, $"welcome latency (connect -> Welcome): {WelcomeLatency}");
        if (Errors.Count == 0)
        {
            sb.AppendLine("errors: none");
        }
        else
        {
            sb.AppendLine("errors (by status / failure):");
            foreach (var (kind, n) in Errors)
            {
                sb.AppendLine(c, $"  {kind,-20} {n,8}   e.g. {(ErrorSamples.TryGetValue(kind, out var s) ? s : "")}");
            }
        }
        sb.AppendLine(c, $"loadgen itself: cpu {LoadGenCpuSeconds:0.00}s total, {LoadGenCpuPercentAverage:0.0}% of one core on average, peak rss {LoadGenPeakRssMb:0}MB");
        return sb.ToString();

        static string Rates(RateSummary r) =>
            string.Create(CultureInfo.InvariantCulture, $"{r.HeartbeatsPerSecond:0.0} hb/s, {r.BatchesPerSecond:0.0} batches/s, {r.AcksPerSecond:0.0} acks/s, loadgen cpu {r.LoadGenCpuPercent:0.0}% over {r.Seconds:0.0}s");
    }
}
