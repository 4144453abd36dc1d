using System.Globalization;
using System.Text.Json;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using V1 = Fleet.Protocol.V1;

namespace Fleet.Coordinator.Schedules;

/// <summary>Ops API for maintenance windows: gRPC, and REST under /api/v1/schedules through JSON transcoding.</summary>
sealed partial class SchedulesApi(
    IDbContextFactory<FleetDbContext> dbFactory,
    WindowScheduler scheduler,
    IOpenWindows openWindows,
    AuditLog audit,
    TimeProvider time,
    ILogger<SchedulesApi> logger) : V1.Schedules.SchedulesBase
{
    const int DefaultPreview = 10, MaxPreview = 100, DefaultOccurrences = 20, MaxOccurrences = 500;

    public override async Task<Schedule> CreateSchedule(Schedule request, ServerCallContext context)
    {
        var spec = ScheduleSpec.FromMessage(request);
        var actor = context.Actor();
        var now = InvocationUpdates.Now(time);
        await using var db = dbFactory.CreateDbContext();
        if (await db.Set<ScheduleRecord>().AnyAsync(s => s.Id == spec.Id, context.CancellationToken))
            throw new RpcException(new Status(StatusCode.AlreadyExists, $"id: schedule '{spec.Id}' already exists"));
        var record = new ScheduleRecord
        {
            Id = spec.Id, Name = spec.Name, SpecJson = spec.ToJson(), Enabled = request.HasEnabled ? request.Enabled : true, Paused = request.Paused,
            ActiveFrom = now, CreatedAt = now, UpdatedAt = now, CreatedBy = actor.Name,
        };
        db.Add(record);
        audit.Add(db, actor, "schedule.created", $"schedule:{spec.Id}", parameters: Describe(spec, record));
        try { await db.SaveChangesAsync(context.CancellationToken); }
        catch (DbUpdateException) { throw new RpcException(new Status(StatusCode.AlreadyExists, $"id: schedule '{spec.Id}' already exists")); }
        LogChanged(spec.Id, "created", actor.ToString());
        return await ToMessageAsync(db, record, context.CancellationToken);
    }

    public override async Task<Schedule> UpdateSchedule(UpdateScheduleRequest request, ServerCallContext context)
    {
        var id = RequireId(request.Id);
        if (request.Schedule is null) throw ApiArguments.Invalid("schedule: the new definition is required");
        if (request.Schedule.Id.Length > 0 && request.Schedule.Id != id)
            throw ApiArguments.Invalid($"id: '{request.Schedule.Id}' differs from the schedule's id '{id}' (ids cannot change)");
        var spec = ScheduleSpec.FromMessage(request.Schedule, id);
        var actor = context.Actor();
        var now = InvocationUpdates.Now(time);
        await using var db = dbFactory.CreateDbContext();
        var record = await FindAsync(db, id, context.CancellationToken);
        var before = ScheduleSpec.FromJson(record.SpecJson);
        record.Name = spec.Name;
        record.SpecJson = spec.ToJson();
        record.UpdatedAt = now;
        if (request.Schedule.HasEnabled)
        {
            if (request.Schedule.Enabled && !record.Enabled) record.ActiveFrom = now;
            record.Enabled = request.Schedule.Enabled;
        }
        // A new calendar counts from now: a changed cron or zone never fires (or misses) the past.
        if (before.Cron != spec.Cron || before.TimeZone != spec.TimeZone) record.ActiveFrom = now;
        audit.Add(db, actor, "schedule.updated", $"schedule:{id}", parameters: Describe(spec, record));
        await db.SaveChangesAsync(context.CancellationToken);
        LogChanged(id, "updated", actor.ToString());
        return await ToMessageAsync(db, record, context.CancellationToken);
    }

    public override async Task<ListSchedulesResponse> ListSchedules(ListSchedulesRequest request, ServerCallContext context)
    {
        await using var db = dbFactory.CreateDbContext();
        var records = await db.Set<ScheduleRecord>().AsNoTracking().OrderBy(s => s.Id).ToListAsync(context.CancellationToken);
        var agents = await db.Agents.AsNoTracking().ToListAsync(context.CancellationToken);
        var response = new ListSchedulesResponse();
        response.Schedules.AddRange(records.Select(r => ToMessage(r, agents)));
        return response;
    }

    public override async Task<Schedule> GetSchedule(ScheduleRequest request, ServerCallContext context)
    {
        await using var db = dbFactory.CreateDbContext();
        return await ToMessageAsync(db, await FindAsync(db, RequireId(request.Id), context.CancellationToken), context.CancellationToken);
    }

    public override async Task<DeleteScheduleResponse> DeleteSchedule(ScheduleRequest request, ServerCallContext context)
    {
        var id = RequireId(request.Id);
        var actor = context.Actor();
        await using var db = dbFactory.CreateDbContext();
        var record = await FindAsync(db, id, context.CancellationToken);
        db.Remove(record);
        audit.Add(db, actor, "schedule.deleted", $"schedule:{id}", parameters: new Dictionary<string, string?> { ["name"] = record.Name });
        await db.SaveChangesAsync(context.CancellationToken);
        LogChanged(id, "deleted", actor.ToString());
        return new DeleteScheduleResponse { Id = id };
    }

    public override Task<Schedule> PauseSchedule(ScheduleRequest request, ServerCallContext context) => SetPausedAsync(request, true, context);

    public override Task<Schedule> ResumeSchedule(ScheduleRequest request, ServerCallContext context) => SetPausedAsync(request, false, context);

    async Task<Schedule> SetPausedAsync(ScheduleRequest request, bool paused, ServerCallContext context)
    {
        var id = RequireId(request.Id);
        var actor = context.Actor();
        await using var db = dbFactory.CreateDbContext();
        var record = await FindAsync(db, id, context.CancellationToken);
        if (record.Paused != paused)
        {
            var now = InvocationUpdates.Now(time);
            record.Paused = paused;
            record.UpdatedAt = now;
            if (!paused) record.ActiveFrom = now; // what passed while paused is neither fired nor missed
            audit.Add(db, actor, paused ? "schedule.paused" : "schedule.resumed", $"schedule:{id}");
            await db.SaveChangesAsync(context.CancellationToken);
            LogChanged(id, paused ? "paused" : "resumed", actor.ToString());
        }
        return await ToMessageAsync(db, record, context.CancellationToken);
    }

    public override async Task<PreviewScheduleResponse> PreviewSchedule(PreviewScheduleRequest request, ServerCallContext context)
    {
        if (request.Count is < 0 or > MaxPreview)
            throw ApiArguments.Invalid($"count: {request.Count} is out of range (1-{MaxPreview}, 0 for {DefaultPreview})");
        var count = request.Count == 0 ? DefaultPreview : request.Count;
        await using var db = dbFactory.CreateDbContext();
        var record = await FindAsync(db, RequireId(request.Id), context.CancellationToken);
        var spec = ScheduleSpec.FromJson(record.SpecJson);
        var now = time.GetUtcNow().UtcDateTime;
        var others = (await db.Set<ScheduleRecord>().AsNoTracking().Where(s => s.Id != record.Id && s.Enabled).ToListAsync(context.CancellationToken))
            .Select(s => ScheduleSpec.FromJson(s.SpecJson)).ToList();
        var agents = await db.Agents.AsNoTracking().ToListAsync(context.CancellationToken);
        var mine = ScheduleTargets.Resolve(agents, spec).Hosts.Select(h => h.Id).ToHashSet(StringComparer.Ordinal);
        var theirHosts = others.ToDictionary(o => o.Id, o => ScheduleTargets.Resolve(agents, o).Hosts.Count(h => mine.Contains(h.Id)));

        var response = new PreviewScheduleResponse { ScheduleId = spec.Id, TimeZone = spec.TimeZone };
        var from = record.ActiveFrom > now ? record.ActiveFrom : now;
        foreach (var start in spec.Fires(from, DateTime.SpecifyKind(DateTime.MaxValue.AddYears(-1), DateTimeKind.Utc)).Take(count))
        {
            var end = start + spec.Duration;
            var fire = new PreviewFire
            {
                Start = Timestamp.FromDateTime(start), End = Timestamp.FromDateTime(end),
                LocalStart = Local(start, spec.Zone), LocalEnd = Local(end, spec.Zone),
            };
            foreach (var other in others)
            {
                // Their windows that began before this one ends and end after it begins.
                foreach (var theirs in other.Fires(start - other.Duration, end).Where(t => t < end && t + other.Duration > start))
                    fire.Overlaps.Add(new WindowOverlap
                    {
                        ScheduleId = other.Id, Start = Timestamp.FromDateTime(theirs), End = Timestamp.FromDateTime(theirs + other.Duration),
                        SharedHosts = theirHosts[other.Id],
                    });
            }
            response.Fires.Add(fire);
        }
        return response;
    }

    static string Local(DateTime utc, TimeZoneInfo zone)
    {
        var local = TimeZoneInfo.ConvertTime(new DateTimeOffset(utc, TimeSpan.Zero), zone);
        return local.ToString("yyyy-MM-dd'T'HH:mm:sszzz", CultureInfo.InvariantCulture);
    }

    public override async Task<Occurrence> RunScheduleNow(ScheduleRequest request, ServerCallContext context)
    {
        var id = RequireId(request.Id);
        ScheduleRecord record;
        await using (var db = dbFactory.CreateDbContext())
            record = await FindAsync(db, id, context.CancellationToken);
        var occurrence = await scheduler.RunNowAsync(record, context.Actor(), context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.Aborted, $"schedule '{id}' was started at this very instant already; try again"));
        LogChanged(id, "run now", context.Actor().ToString());
        await using var again = dbFactory.CreateDbContext();
        var stored = await again.Set<OccurrenceRecord>().AsNoTracking().SingleAsync(o => o.Id == occurrence.Id, context.CancellationToken);
        return (await ToMessageAsync(again, [stored], context.CancellationToken))[0];
    }

    public override async Task<ListOccurrencesResponse> ListOccurrences(ListOccurrencesRequest request, ServerCallContext context)
    {
        var id = RequireId(request.Id);
        if (request.Limit is < 0 or > MaxOccurrences)
            throw ApiArguments.Invalid($"limit: {request.Limit} is out of range (1-{MaxOccurrences}, 0 for {DefaultOccurrences})");
        var limit = request.Limit == 0 ? DefaultOccurrences : request.Limit;
        await using var db = dbFactory.CreateDbContext();
        var occurrences = await db.Set<OccurrenceRecord>().AsNoTracking().Where(o => o.ScheduleId == id)
            .OrderByDescending(o => o.ScheduledUtc).Take(limit).ToListAsync(context.CancellationToken);
        if (occurrences.Count == 0 && !await db.Set<ScheduleRecord>().AnyAsync(s => s.Id == id, context.CancellationToken))
            throw new RpcException(new Status(StatusCode.NotFound, $"schedule '{id}' not found"));
        var response = new ListOccurrencesResponse();
        response.Occurrences.AddRange(await ToMessageAsync(db, occurrences, context.CancellationToken));
        return response;
    }

    public override async Task<ListOpenWindowsResponse> ListOpenWindows(ListOpenWindowsRequest request, ServerCallContext context)
    {
        var response = new ListOpenWindowsResponse();
        foreach (var window in await openWindows.GetAsync(context.CancellationToken))
        {
            var message = new OpenWindow { OccurrenceId = window.OccurrenceId, ScheduleId = window.ScheduleId, Ends = Timestamp.FromDateTime(window.EndsUtc) };
            message.Hosts.AddRange(window.Hosts);
            response.Windows.Add(message);
        }
        return response;
    }

    static async Task<List<Occurrence>> ToMessageAsync(FleetDbContext db, List<OccurrenceRecord> occurrences, CancellationToken cancellationToken)
    {
        var steps = occurrences.ToDictionary(o => o.Id, o => JsonSerializer.Deserialize<List<StepState>>(o.StepsJson) ?? []);
        var runIds = steps.Values.SelectMany(s => s).Select(s => s.RunId).OfType<string>().ToList();
        var runs = await db.Runs.AsNoTracking().Where(r => runIds.Contains(r.Id)).Select(r => new { r.Id, r.Status }).ToDictionaryAsync(r => r.Id, r => r.Status, cancellationToken);
        return occurrences.Select(o =>
        {
            var message = new Occurrence
            {
                Id = o.Id, ScheduleId = o.ScheduleId, Scheduled = Timestamp.FromDateTime(o.ScheduledUtc), Ends = Timestamp.FromDateTime(o.EndsUtc),
                Kind = o.Kind.ToString().ToLowerInvariant(), State = o.State.ToString().ToLowerInvariant(), Reason = o.Reason,
                OpenedAt = o.OpenedAt is { } opened ? Timestamp.FromDateTime(opened) : null,
                ClosedAt = o.ClosedAt is { } closed ? Timestamp.FromDateTime(closed) : null,
                CreatedBy = o.CreatedBy,
            };
            message.Hosts.AddRange(JsonSerializer.Deserialize<List<string>>(o.HostsJson) ?? []);
            message.Steps.AddRange(steps[o.Id].Select(s => new OccurrenceStep
            {
                Index = s.Index, Task = s.Task, State = s.State, Reason = s.Reason, RunId = s.RunId ?? "",
                RunStatus = s.RunId is { } r && runs.TryGetValue(r, out var status) ? RunsApi.StatusName(status) : "",
            }));
            return message;
        }).ToList();
    }

    async Task<Schedule> ToMessageAsync(FleetDbContext db, ScheduleRecord record, CancellationToken cancellationToken) =>
        ToMessage(record, await db.Agents.AsNoTracking().ToListAsync(cancellationToken));

    /// <summary>The definition, with each step's availability now ("task-unavailable" while no targeted agent offers it) and the next fire time.</summary>
    Schedule ToMessage(ScheduleRecord record, IReadOnlyList<Agents.AgentRecord> agents)
    {
        var spec = ScheduleSpec.FromJson(record.SpecJson);
        var message = spec.ToMessage();
        message.Enabled = record.Enabled;
        message.Paused = record.Paused;
        message.CreatedAt = Timestamp.FromDateTime(record.CreatedAt);
        message.UpdatedAt = Timestamp.FromDateTime(record.UpdatedAt);
        message.CreatedBy = record.CreatedBy;
        message.Source = record.Source;
        var now = time.GetUtcNow().UtcDateTime;
        if (record.Enabled && !record.Paused && spec.NextFire(record.ActiveFrom > now ? record.ActiveFrom : now) is { } next)
            message.NextFire = Timestamp.FromDateTime(next);
        var targets = ScheduleTargets.Resolve(agents, spec);
        foreach (var step in message.Steps)
        {
            if (targets.Unavailable(step.Task) is not { } reason) continue;
            step.Disabled = true;
            step.DisabledReason = reason;
        }
        return message;
    }

    static Dictionary<string, string?> Describe(ScheduleSpec spec, ScheduleRecord record) => new()
    {
        ["name"] = spec.Name,
        ["cron"] = spec.Cron,
        ["timeZone"] = spec.TimeZone,
        ["duration"] = Fleet.Protocol.Durations.Format(spec.Duration),
        ["steps"] = string.Join(",", spec.Steps.Select(s => s.Task)),
        ["targets"] = string.Join(",", spec.Hosts.Concat(spec.Tags)),
        ["enabled"] = record.Enabled ? "true" : "false",
    };

    static string RequireId(string id) =>
        ScheduleIds.IsValid(id) ? id : throw ApiArguments.Invalid($"id: '{id}' is not a valid schedule id");

    static async Task<ScheduleRecord> FindAsync(FleetDbContext db, string id, CancellationToken cancellationToken) =>
        await db.Set<ScheduleRecord>().SingleOrDefaultAsync(s => s.Id == id, cancellationToken)
        ?? throw new RpcException(new Status(StatusCode.NotFound, $"schedule '{id}' not found"));

    [LoggerMessage(Level = LogLevel.Information, Message = "Schedule {ScheduleId} {Change} by {Actor}")]
    partial void LogChanged(string scheduleId, string change, string actor);
}
