using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Metrics;

/// <summary>Deletes raw samples and probe results after 48 h, 1-minute rollups after 30 days, 1-hour rollups after a year.</summary>
public sealed partial class MetricsRetention(IDbContextFactory<FleetDbContext> dbFactory, IOptions<MetricsOptions> options, TimeProvider time, ILogger<MetricsRetention> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.RetentionInterval, time);
        do
        {
            try { await RunOnceAsync(stoppingToken); }
            catch (Exception ex) when (ex is System.Data.Common.DbException or InvalidOperationException)
            {
                LogFailed(ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>One pass; returns the rows deleted (raw, probes, minute rollups, hour rollups).</summary>
    public async Task<(int Raw, int Probes, int Minutes, int Hours)> RunOnceAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var o = options.Value;
        await using var db = dbFactory.CreateDbContext();
        var rawBefore = now - o.RawRetention;
        var raw = await db.Set<MetricSampleRecord>().Where(m => m.Time < rawBefore).ExecuteDeleteAsync(cancellationToken);
        var probes = await db.Set<ProbeResultRecord>().Where(p => p.Time < rawBefore).ExecuteDeleteAsync(cancellationToken);
        var minuteBefore = now - o.MinuteRollupRetention;
        var minutes = await db.Set<MetricRollupRecord>().Where(r => r.Resolution == 60 && r.Bucket < minuteBefore).ExecuteDeleteAsync(cancellationToken);
        var hourBefore = now - o.HourRollupRetention;
        var hours = await db.Set<MetricRollupRecord>().Where(r => r.Resolution == 3600 && r.Bucket < hourBefore).ExecuteDeleteAsync(cancellationToken);
        if (raw + probes + minutes + hours > 0) LogDeleted(raw, probes, minutes, hours);
        return (raw, probes, minutes, hours);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Metrics retention deleted {Raw} raw samples, {Probes} probe results, {Minutes} minute and {Hours} hour rollups")]
    partial void LogDeleted(int raw, int probes, int minutes, int hours);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Metrics retention failed; retrying on the next pass")]
    partial void LogFailed(Exception exception);
}
