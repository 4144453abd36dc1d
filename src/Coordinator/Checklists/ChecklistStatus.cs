using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Checklists;

/// <summary>Where a checklist item stands in one period.</summary>
public enum ChecklistState { Done, Pending, Missed }

/// <summary>A successful run that satisfies an automatic item.</summary>
public sealed record RunEvidence(string RunId, string Task, DateTime FinishedAt)
{
    public string Link => $"/api/v1/runs/{RunId}";
}

/// <summary>One item in one period, with its evidence (runs for automatic items, the sign-off for manual ones).</summary>
public sealed record ChecklistItemState(
    ChecklistItemDefinition Item, CalendarPeriod Period, ChecklistState State, IReadOnlyList<RunEvidence> Runs, int RunCount, ChecklistSignOffRecord? SignOff);

/// <summary>
/// Evaluates checklist items against the stored runs and sign-offs. Evidence for an automatic item is a run of one of
/// its tasks that finished inside the period (UTC) with status Succeeded (every targeted host succeeded) and was not a
/// dry run. Other features (the "checklist item missed" alert rule) call <see cref="MissedAsync"/>.
/// </summary>
public sealed class ChecklistStatus(IDbContextFactory<FleetDbContext> dbFactory, ChecklistCatalog catalog, TimeProvider time)
{
    /// <summary>How many runs an item lists as evidence (the newest); <see cref="ChecklistItemState.RunCount"/> has the total.</summary>
    public const int MaxEvidenceRuns = 5;

    public ChecklistCatalog Catalog => catalog;

    /// <summary>Every item of the period's kind, in definition order.</summary>
    public async Task<IReadOnlyList<ChecklistItemState>> EvaluateAsync(CalendarPeriod period, CancellationToken cancellationToken)
    {
        var items = catalog.Of(period.Kind).ToList();
        if (items.Count == 0) return [];
        var now = time.GetUtcNow();
        await using var db = dbFactory.CreateDbContext();

        var tasks = items.SelectMany(i => i.Tasks).Distinct(StringComparer.Ordinal).ToList();
        var evidence = new Dictionary<string, (int Count, List<RunEvidence> Newest)>(StringComparer.Ordinal);
        if (tasks.Count > 0)
        {
            var (start, end) = (period.Start, period.End);
            var runs = db.Runs.AsNoTracking()
                .Where(r => tasks.Contains(r.Task) && r.Status == RunStatus.Succeeded && !r.DryRun && r.FinishedAt >= start && r.FinishedAt < end);
            var counts = await runs.GroupBy(r => r.Task).Select(g => new { Task = g.Key, Count = g.Count() }).ToListAsync(cancellationToken);
            foreach (var count in counts)
            {
                var task = count.Task;
                var newest = await runs.Where(r => r.Task == task).OrderByDescending(r => r.FinishedAt).ThenByDescending(r => r.Id).Take(MaxEvidenceRuns)
                    .Select(r => new { r.Id, r.FinishedAt }).ToListAsync(cancellationToken);
                evidence[task] = (count.Count, newest.Select(r => new RunEvidence(r.Id, task, r.FinishedAt!.Value)).ToList());
            }
        }

        var text = period.Text;
        var ids = items.Where(i => !i.Automatic).Select(i => i.Id).ToList();
        var signOffs = ids.Count == 0
            ? []
            : (await db.Set<ChecklistSignOffRecord>().AsNoTracking().Where(s => s.Period == text && ids.Contains(s.ItemId)).ToListAsync(cancellationToken))
                .ToDictionary(s => s.ItemId, StringComparer.Ordinal);

        var over = period.IsOver(now);
        return items.Select(item =>
        {
            if (item.Automatic)
            {
                var found = item.Tasks.Where(evidence.ContainsKey).Select(t => evidence[t]).ToList();
                var count = found.Sum(f => f.Count);
                var newest = found.SelectMany(f => f.Newest).OrderByDescending(r => r.FinishedAt).ThenByDescending(r => r.RunId, StringComparer.Ordinal)
                    .Take(MaxEvidenceRuns).ToList();
                return new ChecklistItemState(item, period, count > 0 ? ChecklistState.Done : StateWithout(over), newest, count, null);
            }
            var signOff = signOffs.GetValueOrDefault(item.Id);
            return new ChecklistItemState(item, period, signOff is not null ? ChecklistState.Done : StateWithout(over), [], 0, signOff);
        }).ToList();
    }

    /// <summary>
    /// The items missed in the last finished period of each kind (yesterday, last ISO week, last month, last quarter),
    /// for alert rules; an item missed in an older period is not repeated.
    /// </summary>
    public async Task<IReadOnlyList<ChecklistItemState>> MissedAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var missed = new List<ChecklistItemState>();
        foreach (var kind in CalendarPeriod.Kinds)
        {
            var previous = CalendarPeriod.Containing(kind, now).Previous();
            missed.AddRange((await EvaluateAsync(previous, cancellationToken)).Where(s => s.State == ChecklistState.Missed));
        }
        return missed;
    }

    static ChecklistState StateWithout(bool over) => over ? ChecklistState.Missed : ChecklistState.Pending;
}
