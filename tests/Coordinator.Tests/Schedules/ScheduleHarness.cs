using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Schedules;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Coordinator.Tests.Runs;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using V1 = Fleet.Protocol.V1;

namespace Fleet.Coordinator.Tests.Schedules;

/// <summary>
/// A fresh PostgreSQL database, a fake clock and in-process coordinators on it whose scheduler loop is off: tests
/// drive <see cref="WindowScheduler.TickAsync"/> themselves, so every fire time is reached deterministically.
/// </summary>
public sealed class ScheduleHarness : IAsyncDisposable
{
    readonly PostgresDatabase database = new();
    readonly List<CoordinatorFactory> coordinators = [];

    public FakeTimeProvider Time { get; }

    ScheduleHarness(DateTimeOffset start) => Time = new FakeTimeProvider(start);

    public static async Task<ScheduleHarness> StartAsync(DateTimeOffset start)
    {
        var harness = new ScheduleHarness(start);
        await harness.database.InitializeAsync();
        return harness;
    }

    /// <summary>A coordinator replica on this database and clock (started on first use).</summary>
    public CoordinatorFactory Coordinator(bool loadDefaults = false, TimeSpan? misfireThreshold = null)
    {
        var factory = new CoordinatorFactory(Store.Postgres, database.ConnectionString).Fast().WithTime(Time)
            .With("Fleet:Schedules:RunScheduler", "false")
            // The fake clock jumps hours at a time: agents' streams and presence must outlive the jumps.
            .With("Fleet:Agents:HeartbeatTimeout", "30.00:00:00")
            .With("Fleet:Schedules:LoadDefaults", loadDefaults ? "true" : "false")
            .With("Fleet:Schedules:DefaultsDirectory", Path.Combine(RepoPaths.Root, "deploy", "schedules"))
            .With("Fleet:Schedules:MisfireThreshold", (misfireThreshold ?? TimeSpan.FromMinutes(1)).ToString());
        _ = factory.Server;
        coordinators.Add(factory);
        return factory;
    }

    /// <summary>Stops a replica (a coordinator going down).</summary>
    public void Stop(CoordinatorFactory factory)
    {
        coordinators.Remove(factory);
        factory.Dispose();
    }

    public CoordinatorFactory First => coordinators[0];

    public FleetDbContext Db() => coordinators[0].Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();

    public async Task<List<OccurrenceRecord>> OccurrencesAsync(string? scheduleId = null)
    {
        await using var db = Db();
        return await db.ScheduleOccurrences.AsNoTracking().Where(o => scheduleId == null || o.ScheduleId == scheduleId).OrderBy(o => o.ScheduledUtc).ToListAsync();
    }

    public async Task<int> AuditCountAsync(string action, string? scheduleId = null)
    {
        await using var db = Db();
        return await db.Set<Fleet.Coordinator.Audit.AuditRecord>().CountAsync(a => a.Action == action && (scheduleId == null || a.Target == "schedule:" + scheduleId));
    }

    /// <summary>Moves the clock to <paramref name="at"/> and ticks every replica (concurrently when several).</summary>
    public async Task TickAtAsync(DateTimeOffset at)
    {
        if (at > Time.GetUtcNow()) Time.SetUtcNow(at);
        await Task.WhenAll(coordinators.Select(c => c.Services.GetRequiredService<WindowScheduler>().TickAsync(CancellationToken.None)));
    }

    public Task TickAsync() => TickAtAsync(Time.GetUtcNow());

    /// <summary>Registers agents that are offline but known (with the probe task in their catalog).</summary>
    public async Task AddOfflineAgentsAsync(params string[] ids)
    {
        await using var db = Db();
        var tasks = "[" + string.Join(",", new[] { FakeAgent.Probe(), FakeAgent.Wipe() }.Select(t => JsonFormatter.Default.Format(t))) + "]";
        foreach (var id in ids)
            db.Agents.Add(new AgentRecord { Id = id, Hostname = id + ".example", TasksJson = tasks, FirstSeen = Time.GetUtcNow().UtcDateTime, LastSeen = Time.GetUtcNow().UtcDateTime });
        await db.SaveChangesAsync();
    }

    public static V1.Schedules.SchedulesClient Client(CoordinatorFactory factory, string user = "alice") => new(factory.Channel(user));

    /// <summary>A schedule on every host whose steps run the fake agents' probe task.</summary>
    public static Schedule Probe(string id, string cron, string duration, int steps = 1, string cutoff = "", string onClose = "cancel", string overlap = "alongside", string misfire = "skip", string zone = "UTC")
    {
        var schedule = new Schedule { Id = id, Name = id, Cron = cron, Duration = duration, Cutoff = cutoff, OnClose = onClose, Overlap = overlap, Misfire = misfire, TimeZone = zone, Hosts = { "*" } };
        for (var i = 0; i < steps; i++)
            schedule.Steps.Add(new ScheduleStep { Task = "probe", Parameters = { ["target"] = "example.org" }, OnFailure = "continue", ExecutionTimeout = "6h" }); // the fake clock jumps past the probe's 1 m default
        return schedule;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in coordinators) c.Dispose();
        await database.DisposeAsync();
    }
}
