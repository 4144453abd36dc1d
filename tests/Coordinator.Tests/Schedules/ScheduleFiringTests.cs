using Fleet.Coordinator.Schedules;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Tests.Schedules;

/// <summary>Exactly-once firing: the default calendar over 1,000 days, three racing replicas, restarts across fire times, DST.</summary>
public sealed class ScheduleFiringTests
{
    static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>The runbook's calendar computed by hand (not by Cronos): daily 06:00, Sunday 02:00 and 04:00, first Sunday 01:00 and 03:00 (UTC).</summary>
    static List<(string Schedule, DateTime At)> RunbookCalendar(DateTime from, int days)
    {
        var fires = new List<(string, DateTime)>();
        for (var d = 0; d < days; d++)
        {
            var day = from.Date.AddDays(d);
            fires.Add(("daily-health-checks", day.AddHours(6)));
            if (day.DayOfWeek != DayOfWeek.Sunday) continue;
            fires.Add(("weekly-security-updates", day.AddHours(2)));
            fires.Add(("weekly-performance", day.AddHours(4)));
            if (day.Day > 7) continue;
            fires.Add(("monthly-review", day.AddHours(1)));
            fires.Add(("monthly-database", day.AddHours(3)));
        }
        return fires.Select(f => (f.Item1, DateTime.SpecifyKind(f.Item2, DateTimeKind.Utc))).OrderBy(f => f.Item2).ToList();
    }

    [Fact]
    public async Task DefaultCalendar_Over1000Days_FiresEachOccurrenceExactlyOnce()
    {
        await using var harness = await ScheduleHarness.StartAsync(Start);
        var coordinator = harness.Coordinator(loadDefaults: true);
        await using (var db = harness.Db())
            Assert.Equal(5, await db.Schedules.CountAsync());

        var expected = RunbookCalendar(Start.UtcDateTime, 1000);
        var random = new Random(7);
        foreach (var (_, at) in expected)
        {
            // A tick up to 50 s after the fire time (within the misfire threshold), sometimes a second one at the same instant.
            var tick = new DateTimeOffset(at).AddSeconds(random.Next(0, 50));
            await harness.TickAtAsync(tick);
            if (random.Next(10) == 0) await harness.TickAsync();
        }
        await harness.TickAtAsync(Start.AddDays(1000));

        var occurrences = await harness.OccurrencesAsync();
        var actual = occurrences.Select(o => (o.ScheduleId, o.ScheduledUtc)).OrderBy(o => o.ScheduledUtc).ThenBy(o => o.ScheduleId).ToList();
        Assert.Equal(expected.OrderBy(e => e.At).ThenBy(e => e.Schedule).ToList(), actual);
        Assert.InRange(expected.Count, 1350, 1400);
        Assert.All(occurrences, o => Assert.Equal(OccurrenceKind.Scheduled, o.Kind));
        // No agent exists: each window opened, recorded its steps as skipped (no-hosts) and closed as Skipped: nothing ran.
        Assert.All(occurrences, o => Assert.Equal(OccurrenceState.Skipped, o.State));
        Assert.All(occurrences, o => Assert.Equal("no step ran", o.Reason));
        Assert.All(occurrences, o => Assert.True(o.OpenedAt >= o.ScheduledUtc && o.ClosedAt >= o.OpenedAt, o.Id));
        // (Audit rows are not counted here: a thousand fake days let the audit retention archive the old ones.)
    }

    [Fact]
    public async Task Schedule_FiresOnce_WhenThreeReplicasRace()
    {
        await using var harness = await ScheduleHarness.StartAsync(Start);
        var a = harness.Coordinator();
        harness.Coordinator();
        harness.Coordinator();
        await harness.AddOfflineAgentsAsync("race-1", "race-2");
        await ScheduleHarness.Client(a).CreateScheduleAsync(ScheduleHarness.Probe("race", "*/10 * * * *", "5m", steps: 2));

        var random = new Random(11);
        for (var fire = Start.AddMinutes(10); fire <= Start.AddHours(6); fire = fire.AddMinutes(10))
        {
            await harness.TickAtAsync(fire.AddSeconds(random.Next(0, 30)));
            await harness.TickAtAsync(fire.AddMinutes(5).AddSeconds(random.Next(0, 30))); // the window's end
        }

        var occurrences = await harness.OccurrencesAsync("race");
        Assert.Equal(36, occurrences.Count);
        Assert.Equal(36, occurrences.Select(o => o.ScheduledUtc).Distinct().Count());
        Assert.Equal(36, await harness.AuditCountAsync("window.opened", "race"));
        Assert.Equal(36, await harness.AuditCountAsync("window.closed", "race"));
        await using var db = harness.Db();
        var runs = await db.Runs.AsNoTracking().Where(r => r.OccurrenceId != null).ToListAsync();
        // The hosts were offline all along: step 1 waited (Delayed) until the window closed; step 2 never started.
        Assert.Equal(36, runs.Count);
        Assert.All(occurrences, o => Assert.Single(runs, r => r.Id == ScheduleIds.StepRun("race", o.ScheduledUtc, 0)));
        var invocations = await db.Invocations.AsNoTracking().Where(i => runs.Select(r => r.Id).Contains(i.RunId)).ToListAsync();
        Assert.Equal(72, invocations.Count);
        Assert.All(invocations, i => Assert.Equal(Fleet.Protocol.V1.InvocationState.Skipped, i.State));
        Assert.All(occurrences, o => Assert.Equal(OccurrenceState.Failed, o.State)); // interrupted by the window's end
    }

    [Fact]
    public async Task Restart_AcrossFireTimes_ObeysTheMisfirePolicy()
    {
        await using var harness = await ScheduleHarness.StartAsync(Start);
        var before = harness.Coordinator();
        var client = ScheduleHarness.Client(before);
        await client.CreateScheduleAsync(ScheduleHarness.Probe("skipper", "0 * * * *", "30m", cutoff: "5m", misfire: "skip"));
        await client.CreateScheduleAsync(ScheduleHarness.Probe("catcher", "0 * * * *", "30m", cutoff: "5m", misfire: "run-once"));
        await client.CreateScheduleAsync(ScheduleHarness.Probe("too-late", "0 * * * *", "30m", cutoff: "5m", misfire: "run-once"));
        await harness.TickAtAsync(Start.AddHours(1).AddSeconds(5)); // 01:00 fires normally
        harness.Stop(before);

        // Down from 01:00:05 until 04:10: 02:00, 03:00 and 04:00 passed.
        harness.Time.SetUtcNow(Start.AddHours(4).AddMinutes(10));
        var after = harness.Coordinator();
        var paused = ScheduleHarness.Client(after);
        await paused.PauseScheduleAsync(new ScheduleRequest { Id = "too-late" });
        await harness.TickAsync();

        var skipper = await harness.OccurrencesAsync("skipper");
        // 01:00 fired (with no agent its step had no host, so the window closed Skipped: it ran nothing), the rest were missed.
        Assert.Equal(new[] { OccurrenceState.Skipped, OccurrenceState.Missed, OccurrenceState.Missed, OccurrenceState.Missed }, skipper.Select(o => o.State));
        var catcher = await harness.OccurrencesAsync("catcher");
        Assert.Equal(4, catcher.Count);
        Assert.Equal(new[] { OccurrenceState.Missed, OccurrenceState.Missed }, catcher.Skip(1).Take(2).Select(o => o.State));
        // Only the latest missed occurrence runs, once, inside its own window (04:00-04:30, before the 5 m cutoff).
        var late = catcher[^1];
        Assert.Equal(OccurrenceKind.Late, late.Kind);
        Assert.Equal(Start.AddHours(4).UtcDateTime, late.ScheduledUtc);
        Assert.Equal(Start.AddHours(4).AddMinutes(30).UtcDateTime, late.EndsUtc);
        Assert.Single(catcher, o => o.Kind == OccurrenceKind.Late);
        Assert.Equal(5, await harness.AuditCountAsync("occurrence.missed"));

        // too-late: resumed at 04:10 (what passed while paused is neither fired nor missed); down again until 05:27,
        // after 05:00's last start time (05:25): missed, even with run-once.
        await paused.ResumeScheduleAsync(new ScheduleRequest { Id = "too-late" });
        harness.Stop(after);
        harness.Time.SetUtcNow(Start.AddHours(5).AddMinutes(27));
        harness.Coordinator();
        await harness.TickAsync();
        var tooLate = await harness.OccurrencesAsync("too-late");
        Assert.Equal(new[] { Start.AddHours(1).UtcDateTime, Start.AddHours(5).UtcDateTime }, tooLate.Select(o => o.ScheduledUtc));
        Assert.Equal(OccurrenceState.Missed, tooLate[^1].State);
        var catcherNow = await harness.OccurrencesAsync("catcher");
        Assert.Equal(OccurrenceState.Missed, catcherNow[^1].State);
        Assert.Equal(Start.AddHours(5).UtcDateTime, catcherNow[^1].ScheduledUtc);
    }

    public static TheoryData<string, string, string, string, string[]> DstCases => new()
    {
        // Spring forward: 02:30 does not exist on 29 March in Berlin; it fires once at the next valid instant, 03:00 CEST.
        { "Europe/Berlin", "30 2 * * *", "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z", ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"] },
        // Fall back: 02:30 happens twice on 25 October in Berlin; it fires once (the first, CEST).
        { "Europe/Berlin", "30 2 * * *", "2026-10-23T12:00:00Z", "2026-10-26T12:00:00Z", ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"] },
        // New York: 02:30 does not exist on 8 March; 03:00 EDT.
        { "America/New_York", "30 2 * * *", "2026-03-06T12:00:00Z", "2026-03-09T12:00:00Z", ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"] },
        // New York: 01:30 happens twice on 1 November; once, at 01:30 EDT.
        { "America/New_York", "30 1 * * *", "2026-10-30T12:00:00Z", "2026-11-02T12:00:00Z", ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"] },
    };

    [Theory]
    [MemberData(nameof(DstCases))]
    public async Task Dst_SkippedTimeFiresOnceAtNextInstant_RepeatedTimeFiresOnce(string zone, string cron, string from, string to, string[] expected)
    {
        var start = DateTimeOffset.Parse(from, System.Globalization.CultureInfo.InvariantCulture);
        var end = DateTimeOffset.Parse(to, System.Globalization.CultureInfo.InvariantCulture);
        await using var harness = await ScheduleHarness.StartAsync(start);
        var coordinator = harness.Coordinator(misfireThreshold: TimeSpan.FromMinutes(15));
        await ScheduleHarness.Client(coordinator).CreateScheduleAsync(ScheduleHarness.Probe("dst", cron, "20m", zone: zone));
        // A tick every 10 minutes through both days, across the transition.
        for (var t = start; t <= end; t = t.AddMinutes(10))
            await harness.TickAtAsync(t);

        var fired = (await harness.OccurrencesAsync("dst")).Select(o => o.ScheduledUtc.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(expected, fired);
    }
}
