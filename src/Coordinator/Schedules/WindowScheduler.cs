using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Schedules;

/// <summary>
/// Fires maintenance windows and drives the open ones. Every replica may run this loop: an occurrence is claimed by
/// INSERTing its row (unique on schedule and fire time) before anything is dispatched, and whoever loses the insert
/// does nothing. Each tick: for every enabled, unpaused schedule, the fire times since its last occurrence
/// (the latest fires; older ones and late ones follow the misfire policy), then every waiting or open occurrence
/// is advanced by <see cref="OccurrenceDriver"/>.
/// </summary>
public sealed partial class WindowScheduler(
    IDbContextFactory<FleetDbContext> dbFactory,
    OccurrenceDriver driver,
    AuditLog audit,
    IOptions<SchedulesOptions> options,
    TimeProvider time,
    ILogger<WindowScheduler> logger) : BackgroundService
{
    /// <summary>At most this many missed occurrences are recorded per schedule after downtime (older ones are only logged).</summary>
    internal const int MaxMissedRecorded = 10;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.RunScheduler) return;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await TickAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is DbException or DbUpdateException or InvalidOperationException or TimeoutException or IOException)
            {
                LogTickFailed(ex);
            }
            try { await Task.Delay(options.Value.Interval, time, stoppingToken); }
            catch (OperationCanceledException) { break; }
        }
    }

    /// <summary>One pass: fire what is due, then advance every waiting or open occurrence. Safe to run on several replicas at once.</summary>
    public async Task TickAsync(CancellationToken cancellationToken)
    {
        var now = InvocationUpdates.Now(time);
        List<ScheduleRecord> schedules;
        Dictionary<string, DateTime> lastFired;
        await using (var db = dbFactory.CreateDbContext())
        {
            schedules = await db.Set<ScheduleRecord>().AsNoTracking().Where(s => s.Enabled && !s.Paused).OrderBy(s => s.Id).ToListAsync(cancellationToken);
            // The newest fire per enabled schedule: one backward step on the (schedule, time) unique index each, not a
            // pass over the whole (unpruned) occurrence history every tick.
            var occurrences = db.Set<OccurrenceRecord>();
            lastFired = schedules.Count == 0 ? [] : (await db.Set<ScheduleRecord>().Where(s => s.Enabled && !s.Paused)
                .Select(s => new { s.Id, Last = occurrences.Where(o => o.ScheduleId == s.Id && o.Kind != OccurrenceKind.Manual).Max(o => (DateTime?)o.ScheduledUtc) })
                .ToListAsync(cancellationToken))
                .Where(s => s.Last is not null).ToDictionary(s => s.Id, s => s.Last!.Value);
        }
        foreach (var schedule in schedules)
        {
            try { await FireDueAsync(schedule, lastFired.TryGetValue(schedule.Id, out var l) ? l : null, now, cancellationToken); }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                LogScheduleFailed(schedule.Id, ex);
            }
        }
        await driver.AdvanceAllAsync(now, cancellationToken);
    }

    /// <param name="last">The latest fire time already claimed (by any replica), if any.</param>
    async Task FireDueAsync(ScheduleRecord schedule, DateTime? last, DateTime now, CancellationToken cancellationToken)
    {
        var from = last is { } l && l > schedule.ActiveFrom ? l : schedule.ActiveFrom;
        if (from >= now) return;
        var spec = ScheduleSpec.FromJson(schedule.SpecJson);
        // Only the latest few fire times matter (a long downtime of a frequent schedule is not a burst).
        var due = new Queue<DateTime>();
        var skipped = 0;
        foreach (var fire in spec.Fires(from, now))
        {
            due.Enqueue(fire);
            if (due.Count > MaxMissedRecorded + 1) { due.Dequeue(); skipped++; }
        }
        if (due.Count == 0) return;
        if (skipped > 0) LogMissedUnrecorded(schedule.Id, skipped);
        var times = due.ToList();
        var actor = new Actor(ActorKind.Schedule, schedule.Id, "");
        for (var i = 0; i < times.Count - 1; i++)
            await ClaimAsync(spec, times[i], OccurrenceKind.Scheduled, actor, now, missed: "the coordinator was not running at its fire time", cancellationToken);

        var latest = times[^1];
        if (now - latest <= options.Value.MisfireThreshold)
            await ClaimAsync(spec, latest, OccurrenceKind.Scheduled, actor, now, missed: null, cancellationToken);
        else if (spec.Misfire == MisfirePolicy.RunOnce && now < latest + spec.Duration - spec.Cutoff)
            await ClaimAsync(spec, latest, OccurrenceKind.Late, actor, now, missed: null, cancellationToken);
        else
            await ClaimAsync(spec, latest, OccurrenceKind.Scheduled, actor, now,
                missed: spec.Misfire == MisfirePolicy.RunOnce ? "noticed after its window's last start time (misfire: run-once)" : "noticed late (misfire: skip)",
                cancellationToken);
    }

    /// <summary>Opens a window now for run-now (a manual occurrence); null if the same instant was already claimed.</summary>
    public async Task<OccurrenceRecord?> RunNowAsync(ScheduleRecord schedule, Actor actor, CancellationToken cancellationToken)
    {
        var now = InvocationUpdates.Now(time);
        var occurrence = await ClaimAsync(ScheduleSpec.FromJson(schedule.SpecJson), now, OccurrenceKind.Manual, actor, now, missed: null, cancellationToken);
        if (occurrence is not null) await driver.AdvanceAllAsync(now, cancellationToken);
        return occurrence;
    }

    /// <summary>
    /// The claim: INSERTs the occurrence row (and its audit events) in one transaction. Returns null when another
    /// replica (or an earlier tick) inserted it first; nothing else happens then.
    /// </summary>
    internal async Task<OccurrenceRecord?> ClaimAsync(ScheduleSpec spec, DateTime scheduled, OccurrenceKind kind, Actor actor, DateTime now, string? missed, CancellationToken cancellationToken)
    {
        var id = ScheduleIds.Occurrence(spec.Id, scheduled);
        var ends = (kind == OccurrenceKind.Manual ? now : scheduled) + spec.Duration;
        await using var db = dbFactory.CreateDbContext();
        if (await db.Set<OccurrenceRecord>().AnyAsync(o => o.Id == id, cancellationToken)) return null;

        var occurrence = new OccurrenceRecord
        {
            Id = id,
            ScheduleId = spec.Id,
            ScheduledUtc = scheduled,
            EndsUtc = ends,
            Kind = kind,
            SpecJson = spec.ToJson(),
            StepsJson = JsonSerializer.Serialize(spec.Steps.Select((s, i) => new StepState { Index = i, Task = s.Task }).ToList()),
            ClaimedAt = now,
            CreatedBy = actor.ToString(),
        };
        var target = $"schedule:{spec.Id}";
        var parameters = new Dictionary<string, string?>
        {
            ["occurrence"] = id,
            ["scheduled"] = scheduled.ToString("O", CultureInfo.InvariantCulture),
            ["ends"] = ends.ToString("O", CultureInfo.InvariantCulture),
            ["kind"] = kind.ToString().ToLowerInvariant(),
        };
        if (missed is not null)
        {
            occurrence.State = OccurrenceState.Missed;
            occurrence.Reason = missed;
            occurrence.ClosedAt = now;
            parameters["reason"] = missed;
            audit.Add(db, actor, "occurrence.missed", target, parameters: parameters, outcome: "error: missed");
        }
        else
        {
            var hosts = (await ScheduleTargets.ResolveAsync(db, spec, cancellationToken)).Hosts.Select(h => h.Id).ToList();
            var (state, reason, kept) = await OccurrenceDriver.OverlapAsync(db, spec, id, hosts, now, cancellationToken);
            occurrence.State = state;
            occurrence.Reason = reason;
            occurrence.HostsJson = JsonSerializer.Serialize(kept);
            parameters["hosts"] = string.Join(",", kept);
            if (reason.Length > 0) parameters["reason"] = reason;
            if (kind == OccurrenceKind.Manual) audit.Add(db, actor, "occurrence.run-now", target, parameters: parameters);
            switch (state)
            {
                case OccurrenceState.Open:
                    occurrence.OpenedAt = now;
                    audit.Add(db, actor, "window.opened", target, parameters: parameters);
                    break;
                case OccurrenceState.Waiting:
                    audit.Add(db, actor, "occurrence.waiting", target, parameters: parameters);
                    break;
                default:
                    occurrence.ClosedAt = now;
                    audit.Add(db, actor, "occurrence.skipped", target, parameters: parameters, outcome: "error: skipped");
                    break;
            }
        }
        db.Add(occurrence);
        try
        {
            await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
            await db.SaveChangesAsync(cancellationToken);
            await tx.CommitAsync(cancellationToken);
        }
        catch (DbUpdateException)
        {
            await using var again = dbFactory.CreateDbContext();
            if (await again.Set<OccurrenceRecord>().AnyAsync(o => o.Id == id || (o.ScheduleId == spec.Id && o.ScheduledUtc == scheduled), cancellationToken))
            {
                LogLostClaim(spec.Id, scheduled);
                return null; // another replica claimed it: it fires, this one does nothing
            }
            throw;
        }
        LogClaimed(spec.Id, scheduled, kind.ToString(), occurrence.State.ToString());
        return occurrence;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Scheduler tick failed; tried again next interval")]
    partial void LogTickFailed(Exception exception);

    [LoggerMessage(Level = LogLevel.Error, Message = "Schedule {ScheduleId}: firing failed; the other schedules carry on")]
    partial void LogScheduleFailed(string scheduleId, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Schedule {ScheduleId}: {Count} older fire times passed while no coordinator ran (not recorded)")]
    partial void LogMissedUnrecorded(string scheduleId, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Schedule {ScheduleId}: occurrence {Scheduled:O} claimed ({Kind}, {State})")]
    partial void LogClaimed(string scheduleId, DateTime scheduled, string kind, string state);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Schedule {ScheduleId}: occurrence {Scheduled:O} already claimed elsewhere")]
    partial void LogLostClaim(string scheduleId, DateTime scheduled);
}

/// <summary>A step's state inside an occurrence (JSON in <see cref="OccurrenceRecord.StepsJson"/>).</summary>
public sealed class StepState
{
    public const string Pending = "pending", Running = "running", Succeeded = "succeeded", Failed = "failed", Skipped = "skipped", Interrupted = "interrupted";

    public int Index { get; set; }
    public string Task { get; set; } = "";
    public string State { get; set; } = Pending;
    public string Reason { get; set; } = "";
    public string? RunId { get; set; }

    public bool IsFinal => State is not (Pending or Running);
}
