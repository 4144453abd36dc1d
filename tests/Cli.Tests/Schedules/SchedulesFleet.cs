using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Tests.Schedules;

/// <summary>Schedules at fixed times for the fake to serve.</summary>
public static class SchedulesFleet
{
    public static Timestamp At(DateTimeOffset time) => Timestamp.FromDateTimeOffset(time);

    /// <summary>Daily 06:00 UTC, 15 minutes, a second step whose task no agent offers.</summary>
    public static Schedule Daily() => new()
    {
        Id = "daily-health-checks", Name = "Daily health checks", Cron = "0 6 * * *", TimeZone = "UTC", Duration = "15m", OnClose = "cancel",
        Hosts = { "*" }, Enabled = true, Source = "defaults", CreatedBy = "system:schedule-defaults",
        NextFire = At(new DateTimeOffset(2025, 3, 15, 6, 0, 0, TimeSpan.Zero)),
        CreatedAt = At(TestFleet.Now.AddDays(-7)), UpdatedAt = At(TestFleet.Now.AddDays(-7)),
        Steps =
        {
            new ScheduleStep { Name = "Health", Task = "health.check", OnFailure = "continue" },
            new ScheduleStep { Name = "Scan", Task = "security.scan", OnFailure = "continue", Disabled = true, DisabledReason = "task-unavailable" },
        },
    };

    /// <summary>Nightly 03:00 Berlin time; its next fire is the first after the spring-forward change (01:00Z = 03:00+02:00).</summary>
    public static Schedule Berlin() => new()
    {
        Id = "nightly-berlin", Name = "Nightly Berlin", Cron = "0 3 * * *", TimeZone = "Europe/Berlin", Duration = "2h", Cutoff = "10m", OnClose = "finish",
        Tags = { "role=web" }, Enabled = true, Source = "api", CreatedBy = "alice",
        NextFire = At(new DateTimeOffset(2025, 3, 30, 1, 0, 0, TimeSpan.Zero)),
        Steps = { new ScheduleStep { Task = "packages.security-updates", MaxConcurrency = "25%", MaxErrors = "0", Parameters = { ["reboot"] = "false" } } },
    };

    /// <summary>A paused schedule has no next fire.</summary>
    public static Schedule Paused() => new()
    {
        Id = "monthly-review", Name = "Monthly review", Cron = "0 1 * * SUN#1", TimeZone = "UTC", Duration = "4h", Hosts = { "web-01" },
        Enabled = true, Paused = true, Steps = { new ScheduleStep { Task = "health.check" } },
    };

    public static Occurrence Succeeded(string id, DateTimeOffset scheduled) => new()
    {
        Id = id, ScheduleId = "daily-health-checks", Kind = "scheduled", State = "succeeded",
        Scheduled = At(scheduled), Ends = At(scheduled.AddMinutes(15)), OpenedAt = At(scheduled), ClosedAt = At(scheduled.AddMinutes(2)),
        Hosts = { "a-web1" }, CreatedBy = "system:scheduler",
        Steps =
        {
            new OccurrenceStep { Index = 0, Task = "health.check", State = "succeeded", RunId = "r-health1", RunStatus = "succeeded" },
            new OccurrenceStep { Index = 1, Task = "security.scan", State = "skipped", Reason = "task-unavailable" },
        },
    };
}
