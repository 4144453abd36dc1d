using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Schedules;

/// <summary>
/// On an installation's first start, loads the default schedules (the runbook's five windows, deploy/schedules/*.yaml).
/// A marker row written in the same transaction makes it happen once: later edits and deletions by operators stick,
/// and two replicas starting together load them once.
/// </summary>
sealed partial class ScheduleDefaults(
    IDbContextFactory<FleetDbContext> dbFactory,
    AuditLog audit,
    IOptions<SchedulesOptions> options,
    TimeProvider time,
    ILogger<ScheduleDefaults> logger) : IHostedService
{
    public const string Marker = "defaults-loaded";

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!options.Value.LoadDefaults) return;
        var directory = options.Value.EffectiveDefaultsDirectory;
        await using var db = dbFactory.CreateDbContext();
        if (await db.Set<ScheduleMarkerRecord>().AnyAsync(m => m.Key == Marker, cancellationToken)) return;
        if (!Directory.Exists(directory))
        {
            LogNoDefaults(directory);
            return;
        }
        var now = Runs.InvocationUpdates.Now(time);
        var actor = Actor.System("schedule-defaults");
        var specs = new List<ScheduleSpec>();
        foreach (var file in Directory.EnumerateFiles(directory, "*.yaml").Order(StringComparer.Ordinal))
        {
            try { specs.Add(ScheduleSpec.FromMessage(ScheduleYaml.Parse(await File.ReadAllTextAsync(file, cancellationToken), Path.GetFileName(file)))); }
            catch (RpcException ex) { throw new InvalidOperationException($"Fleet:Schedules:DefaultsDirectory: {file}: {ex.Status.Detail}", ex); }
        }
        var existing = await db.Set<ScheduleRecord>().Select(s => s.Id).ToListAsync(cancellationToken);
        db.Add(new ScheduleMarkerRecord { Key = Marker, At = now });
        foreach (var spec in specs.Where(s => !existing.Contains(s.Id)))
        {
            db.Add(new ScheduleRecord
            {
                Id = spec.Id, Name = spec.Name, SpecJson = spec.ToJson(), ActiveFrom = now, CreatedAt = now, UpdatedAt = now,
                CreatedBy = actor.ToString(), Source = "defaults",
            });
            audit.Add(db, actor, "schedule.created", $"schedule:{spec.Id}", parameters: new Dictionary<string, string?> { ["cron"] = spec.Cron, ["source"] = "defaults" });
        }
        try
        {
            await db.SaveChangesAsync(cancellationToken);
            LogLoaded(specs.Count, directory);
        }
        catch (DbUpdateException)
        {
            LogLoadedElsewhere(); // another replica wrote the marker first
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded {Count} default schedules from {Directory}")]
    partial void LogLoaded(int count, string directory);

    [LoggerMessage(Level = LogLevel.Information, Message = "Default schedules were loaded by another replica")]
    partial void LogLoadedElsewhere();

    [LoggerMessage(Level = LogLevel.Warning, Message = "No default schedules: {Directory} does not exist")]
    partial void LogNoDefaults(string directory);
}
