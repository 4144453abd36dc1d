using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Storage;
using Fleet.Protocol;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using V1 = Fleet.Protocol.V1;

namespace Fleet.Coordinator.Metrics;

/// <summary>Section "Fleet:Metrics".</summary>
public sealed class MetricsOptions
{
    public const string Section = "Fleet:Metrics";

    /// <summary>A series of an online host older than this is reported as "no data" (stale).</summary>
    public TimeSpan StaleAfter { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Raw samples (and probe results) are kept this long.</summary>
    public TimeSpan RawRetention { get; set; } = TimeSpan.FromHours(48);

    /// <summary>1-minute rollups are kept this long.</summary>
    public TimeSpan MinuteRollupRetention { get; set; } = TimeSpan.FromDays(30);

    /// <summary>1-hour rollups are kept this long.</summary>
    public TimeSpan HourRollupRetention { get; set; } = TimeSpan.FromDays(365);

    /// <summary>How often the retention job runs.</summary>
    public TimeSpan RetentionInterval { get; set; } = TimeSpan.FromMinutes(10);
}

sealed class MetricsApi(
    IDbContextFactory<FleetDbContext> dbFactory,
    ILatestMetrics latest,
    IAgentPresence presence,
    IOptions<MetricsOptions> options,
    TimeProvider time) : V1.Metrics.MetricsBase
{
    const int MaxPoints = 20_000;

    public override async Task<GetLatestMetricsResponse> GetLatestMetrics(GetLatestMetricsRequest request, ServerCallContext context)
    {
        await using var db = dbFactory.CreateDbContext();
        var agents = await db.Agents.AsNoTracking().OrderBy(a => a.Hostname).ThenBy(a => a.Id).Select(a => new { a.Id, a.Hostname }).ToListAsync(context.CancellationToken);
        var ids = agents.Select(a => a.Id).ToList();
        var online = await presence.GetAsync(ids, context.CancellationToken);
        var values = await latest.GetAsync(ids, context.CancellationToken);
        var names = request.Names.ToHashSet(StringComparer.Ordinal);
        var staleBefore = time.GetUtcNow().UtcDateTime - options.Value.StaleAfter;
        var response = new GetLatestMetricsResponse();
        foreach (var agent in agents)
        {
            var host = new HostMetrics
            {
                AgentId = agent.Id,
                Hostname = agent.Hostname,
                Status = online.ContainsKey(agent.Id) ? AgentStatus.Online : AgentStatus.Offline,
            };
            if (values.TryGetValue(agent.Id, out var v))
            {
                foreach (var s in v.Samples.Where(s => names.Count == 0 || names.Contains(s.Name)))
                {
                    var sample = new V1.LatestSample { Name = s.Name, Value = s.Value, Time = Timestamp.FromDateTime(s.Time), Stale = host.Status == AgentStatus.Online && s.Time < staleBefore };
                    foreach (var (k, val) in MetricLabels.Parse(s.Labels)) sample.Labels[k] = val;
                    host.Samples.Add(sample);
                }
                foreach (var p in v.Probes)
                    host.Probes.Add(new V1.LatestProbe { Name = p.Name, Ok = p.Ok, LatencyMs = p.LatencyMs, Reason = p.Reason, Time = Timestamp.FromDateTime(p.Time) });
            }
            response.Hosts.Add(host);
        }
        return response;
    }

    public override async Task<QueryMetricsResponse> QueryMetrics(QueryMetricsRequest request, ServerCallContext context)
    {
        ApiArguments.AgentId(request.AgentId, "agent_id");
        if (string.IsNullOrWhiteSpace(request.Name))
            throw new RpcException(new Status(StatusCode.InvalidArgument, "name: a metric name is required, e.g. cpu.usage"));
        if (request.StepSeconds < 0 || request.StepSeconds > 86_400)
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"step_seconds: {request.StepSeconds} is out of range (0-86400)"));
        var to = request.To is null ? time.GetUtcNow().UtcDateTime : ApiArguments.Time(request.To, "to");
        var from = request.From is null ? to.AddHours(-1) : ApiArguments.Time(request.From, "from");
        if (from > to)
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"from: {from:O} is after to: {to:O}"));

        await using var db = dbFactory.CreateDbContext();
        var response = new QueryMetricsResponse { AgentId = request.AgentId, Name = request.Name };
        // Steps of a minute or more read the rollups (kept for 30 days / a year); finer steps read raw samples (48 h).
        if (request.StepSeconds >= 60)
        {
            var resolution = request.StepSeconds >= 3600 ? 3600 : 60;
            var buckets = await db.Set<MetricRollupRecord>().AsNoTracking()
                .Where(r => r.AgentId == request.AgentId && r.Name == request.Name && r.Resolution == resolution && r.Bucket >= from && r.Bucket <= to)
                .Select(r => new { r.Labels, r.Bucket, r.Sum, r.Count })
                .ToListAsync(context.CancellationToken);
            var step = TimeSpan.FromSeconds(request.StepSeconds).Ticks;
            foreach (var group in buckets.GroupBy(r => r.Labels).OrderBy(g => g.Key, StringComparer.Ordinal))
                response.Series.Add(ToSeries(group.Key, group
                    .GroupBy(r => new DateTime(r.Bucket.Ticks - r.Bucket.Ticks % step, DateTimeKind.Utc))
                    .OrderBy(g => g.Key)
                    .Select(g => (g.Key, g.Sum(r => r.Sum) / g.Sum(r => r.Count)))));
            return response;
        }

        var rows = await db.Set<MetricSampleRecord>().AsNoTracking()
            .Where(m => m.AgentId == request.AgentId && m.Name == request.Name && m.Time >= from && m.Time <= to)
            .OrderBy(m => m.Labels).ThenBy(m => m.Time)
            .Take(MaxPoints + 1)
            .Select(m => new { m.Labels, m.Time, m.Value })
            .ToListAsync(context.CancellationToken);
        if (rows.Count > MaxPoints)
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"from/to: more than {MaxPoints} samples in range; narrow the range or set step_seconds"));
        foreach (var group in rows.GroupBy(r => r.Labels))
        {
            var points = request.StepSeconds == 0
                ? group.Select(r => (r.Time, r.Value))
                : group.GroupBy(r => new DateTime(r.Time.Ticks - r.Time.Ticks % TimeSpan.FromSeconds(request.StepSeconds).Ticks, DateTimeKind.Utc))
                       .Select(g => (g.Key, g.Average(r => r.Value)));
            response.Series.Add(ToSeries(group.Key, points));
        }
        return response;
    }

    static Series ToSeries(string labels, IEnumerable<(DateTime Time, double Value)> points)
    {
        var series = new Series();
        foreach (var (k, v) in MetricLabels.Parse(labels)) series.Labels[k] = v;
        series.Points.AddRange(points.Select(p => new SeriesPoint { Time = Timestamp.FromDateTime(p.Time), Value = p.Value }));
        return series;
    }
}
