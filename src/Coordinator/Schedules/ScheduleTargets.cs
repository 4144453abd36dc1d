using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Schedules;

/// <summary>The hosts a window targets now, and which of them offer a step's task (re-checked at every fire and step start).</summary>
sealed class ScheduleTargets
{
    readonly List<AgentRecord> hosts;
    readonly Dictionary<string, HashSet<string>> catalogs = new(StringComparer.Ordinal);

    ScheduleTargets(List<AgentRecord> hosts) => this.hosts = hosts;

    public IReadOnlyList<AgentRecord> Hosts => hosts;

    public static async Task<ScheduleTargets> ResolveAsync(FleetDbContext db, ScheduleSpec spec, CancellationToken cancellationToken)
    {
        var agents = await db.Agents.AsNoTracking().OrderBy(a => a.Hostname).ThenBy(a => a.Id).ToListAsync(cancellationToken);
        return Resolve(agents, spec);
    }

    public static ScheduleTargets Resolve(IReadOnlyList<AgentRecord> agents, ScheduleSpec spec)
    {
        var all = spec.Hosts.Contains(ScheduleSpec.AllHosts);
        var selectors = spec.Tags.Select(RunSpec.Tag).Select(t => KeyValuePair.Create(t.Key, t.Value)).ToList();
        var chosen = agents.Where(a =>
            all
            || spec.Hosts.Any(h => AgentSelection.IsNamed(a, h))
            || (selectors.Count > 0 && AgentSelection.HasTags(AgentRegistry.Tags(a), selectors))).ToList();
        return new ScheduleTargets(chosen);
    }

    /// <summary>The targeted hosts whose catalog offers <paramref name="task"/>.</summary>
    public List<AgentRecord> Offering(string task) => hosts.Where(h => TaskNames(h).Contains(task)).ToList();

    /// <summary>Null when the step can run now; otherwise "no-hosts" or "task-unavailable".</summary>
    public string? Unavailable(string task) =>
        hosts.Count == 0 ? "no-hosts" : Offering(task).Count == 0 ? "task-unavailable" : null;

    HashSet<string> TaskNames(AgentRecord host)
    {
        if (!catalogs.TryGetValue(host.TasksJson, out var names))
            catalogs[host.TasksJson] = names = AgentRegistry.Tasks(host).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        return names;
    }
}
