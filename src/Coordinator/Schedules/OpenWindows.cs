using System.Text.Json;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Schedules;

/// <summary>A maintenance window open now: its hosts (agent ids) and when it ends.</summary>
public sealed record OpenWindowInfo(string OccurrenceId, string ScheduleId, IReadOnlyList<string> Hosts, DateTime EndsUtc);

/// <summary>The maintenance windows open now, for other features (the alert fan-out is to silence a window's hosts while it runs).</summary>
public interface IOpenWindows
{
    Task<IReadOnlyList<OpenWindowInfo>> GetAsync(CancellationToken cancellationToken);

    /// <summary>The open windows that include <paramref name="agentId"/>.</summary>
    async Task<IReadOnlyList<OpenWindowInfo>> ForHostAsync(string agentId, CancellationToken cancellationToken) =>
        (await GetAsync(cancellationToken)).Where(w => w.Hosts.Contains(agentId, StringComparer.Ordinal)).ToList();
}

/// <summary>Reads the open occurrences from the database (the one truth across replicas).</summary>
sealed class OpenWindows(IDbContextFactory<FleetDbContext> dbFactory, TimeProvider time) : IOpenWindows
{
    public async Task<IReadOnlyList<OpenWindowInfo>> GetAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        await using var db = dbFactory.CreateDbContext();
        var open = await db.Set<OccurrenceRecord>().AsNoTracking()
            .Where(o => o.State == OccurrenceState.Open && o.EndsUtc > now)
            .OrderBy(o => o.ScheduledUtc)
            .Select(o => new { o.Id, o.ScheduleId, o.HostsJson, o.EndsUtc })
            .ToListAsync(cancellationToken);
        return open.Select(o => new OpenWindowInfo(o.Id, o.ScheduleId, JsonSerializer.Deserialize<List<string>>(o.HostsJson) ?? [], o.EndsUtc)).ToList();
    }
}
