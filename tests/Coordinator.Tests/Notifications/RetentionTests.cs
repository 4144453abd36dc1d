using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Notifications;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Coordinator.Tests.Notifications;

/// <summary>
/// <see cref="NotificationRetention"/> on PostgreSQL and SQLite: old rows in a final state of an episode that is over go
/// (in batches); recent ones, unfinished ones and every row of a still-open episode stay, so pruning never repeats a
/// notification nor loses a resolved one.
/// </summary>
public sealed class RetentionTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    static long ruleIds = 5_000_000_000 + Random.Shared.Next(0, 1_000_000) * 10L;

    CoordinatorFactory Coordinator(Store store, FakeTimeProvider time) =>
        NotificationsKit.Coordinator(store, store == Store.Postgres ? postgres.ConnectionString : null).WithTime(time);

    static Dictionary<string, string> Labels(string rule, string host) => new() { ["alertname"] = rule, ["host"] = host, ["agent_id"] = "agent-" + host };

    /// <summary>An alert (its state row) and the transitions of one episode, written as the engine and the router leave them.</summary>
    static async Task<List<AlertTransitionRecord>> EpisodeAsync(CoordinatorFactory f, string rule, string alertState, DateTime at, long episode = 1,
        long alertEpisode = 1, bool resolved = false, bool resolvedRouted = true, bool alertRow = true)
    {
        var labels = Labels(rule, "web-1");
        var ruleId = Interlocked.Increment(ref ruleIds);
        var fingerprint = AlertLabels.Fingerprint(labels);
        AlertTransitionRecord Transition(string kind, DateTime time, DateTime? routed) => new()
        {
            RuleId = ruleId, RuleName = rule, Fingerprint = fingerprint, Episode = episode, Kind = kind, Severity = "warning", Value = 0.9,
            Time = time, RoutedAt = routed, LabelsJson = AlertLabels.Json(labels), AnnotationsJson = "{}",
        };
        var rows = new List<AlertTransitionRecord> { Transition(AlertTransitionKinds.Firing, at, at) };
        if (resolved) rows.Add(Transition(AlertTransitionKinds.Resolved, at.AddHours(1), resolvedRouted ? at.AddHours(1) : null));
        await using var db = f.Db();
        if (alertRow)
            db.Set<AlertRecord>().Add(new AlertRecord
            {
                RuleId = ruleId, RuleName = rule, Fingerprint = fingerprint, State = alertState, Episode = alertEpisode, Severity = "warning",
                LabelsJson = AlertLabels.Json(labels), FiringSince = at, ActiveSince = at, UpdatedAt = at,
            });
        db.Set<AlertTransitionRecord>().AddRange(rows);
        await db.SaveChangesAsync();
        return rows;
    }

    static NotificationRecord Row(AlertTransitionRecord t, string state, DateTime created, int sequence = 0, string receiver = "hook") => new()
    {
        TransitionId = t.Id, Receiver = receiver, Sequence = sequence, State = state, CreatedAt = created, NextAttemptAt = created,
        SentAt = state == NotificationStates.Sent ? created : null,
    };

    static async Task<List<long>> AddAsync(CoordinatorFactory f, params NotificationRecord[] rows)
    {
        await using var db = f.Db();
        db.Set<NotificationRecord>().AddRange(rows);
        await db.SaveChangesAsync();
        return rows.Select(r => r.Id).ToList();
    }

    static async Task<HashSet<long>> LeftAsync(CoordinatorFactory f, IEnumerable<long> ids)
    {
        var list = ids.ToList();
        await using var db = f.Db();
        return (await db.Set<NotificationRecord>().AsNoTracking().Where(n => list.Contains(n.Id)).Select(n => n.Id).ToListAsync()).ToHashSet();
    }

    [Theory]
    [InlineData(Store.Postgres)]
    [InlineData(Store.Sqlite)]
    public async Task OldFinalRowsOfOverEpisodesGo_InBatches_RecentUnfinishedAndOpenEpisodeRowsStay(Store store)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(DateTime.UtcNow.Date.AddHours(12), TimeSpan.Zero));
        await using var f = Coordinator(store, time).With("Fleet:Notifications:RetentionInterval", "1.00:00:00");
        _ = f.Server;
        var now = time.GetUtcNow().UtcDateTime;
        var old = now.AddDays(-40);
        var recent = now.AddDays(-29);

        // Over: resolved (and the resolved transition routed). Every final state goes; recent, pending and sending rows stay.
        var over = await EpisodeAsync(f, "disk-full", AlertStates.Resolved, old, resolved: true);
        var overGone = await AddAsync(f,
            Row(over[0], NotificationStates.Sent, old), Row(over[0], NotificationStates.Dead, old, receiver: "mail"),
            Row(over[0], NotificationStates.Silenced, old, receiver: "slack"), Row(over[0], NotificationStates.Inhibited, old, receiver: "pager"),
            Row(over[0], NotificationStates.Sent, old, sequence: 1), Row(over[1], NotificationStates.Sent, old));
        var overKept = await AddAsync(f,
            Row(over[1], NotificationStates.Sent, recent, receiver: "mail"), Row(over[1], NotificationStates.Pending, old, receiver: "slack"),
            Row(over[1], NotificationStates.Sending, old, receiver: "pager"));
        // Over too: an earlier episode of an alert that fires again now (episode 2), and an alert whose row is gone (rule deleted).
        var earlier = await EpisodeAsync(f, "load-high", AlertStates.Firing, old, episode: 1, alertEpisode: 2);
        var orphan = await EpisodeAsync(f, "deleted-rule", AlertStates.Resolved, old, alertRow: false);
        var otherGone = await AddAsync(f, Row(earlier[0], NotificationStates.Sent, old), Row(orphan[0], NotificationStates.Dead, old));
        // Open: still firing (its repeats and its resolved message read these rows), and resolved but the resolved
        // transition not routed yet (the router reads who heard it fire).
        var firing = await EpisodeAsync(f, "nginx-down", AlertStates.Firing, old);
        var unrouted = await EpisodeAsync(f, "cert-expiring", AlertStates.Resolved, old, resolved: true, resolvedRouted: false);
        var openKept = await AddAsync(f,
            Row(firing[0], NotificationStates.Sent, old), Row(firing[0], NotificationStates.Sent, old.AddDays(1), sequence: 1),
            Row(firing[0], NotificationStates.Silenced, old, receiver: "slack"), Row(firing[0], NotificationStates.Dead, old, receiver: "mail"),
            Row(unrouted[0], NotificationStates.Sent, old));
        // More than one delete statement's worth.
        var bulk = await EpisodeAsync(f, "flapping", AlertStates.Resolved, old, resolved: true);
        var bulkGone = await AddAsync(f, Enumerable.Range(0, NotificationRetention.BatchSize + 3)
            .Select(i => Row(bulk[0], NotificationStates.Sent, old, sequence: i)).ToArray());

        // (The start-up pass of the background service may run meanwhile and take some rows first: the rows left are
        // the outcome to check, not this call's count.)
        await f.Services.GetRequiredService<NotificationRetention>().RunOnceAsync(default);

        var all = overGone.Concat(overKept).Concat(otherGone).Concat(openKept).Concat(bulkGone).ToList();
        var left = await LeftAsync(f, all);
        Assert.Equal(overKept.Concat(openKept).Order(), left.Order());
        Assert.Equal(0, await f.Services.GetRequiredService<NotificationRetention>().RunOnceAsync(default));

        // Once the firing alert resolves and its resolved transition is routed, its old rows go too.
        await using (var db = f.Db())
        {
            await db.Set<AlertRecord>().Where(a => a.RuleId == firing[0].RuleId).ExecuteUpdateAsync(s => s.SetProperty(a => a.State, AlertStates.Resolved));
            await db.Set<AlertTransitionRecord>().Where(t => t.RuleId == unrouted[0].RuleId && t.RoutedAt == null).ExecuteUpdateAsync(s => s.SetProperty(t => t.RoutedAt, now));
        }
        await f.Services.GetRequiredService<NotificationRetention>().RunOnceAsync(default);
        Assert.Equal(overKept.Order(), (await LeftAsync(f, all)).Order());
    }

    [Theory]
    [InlineData(Store.Postgres)]
    [InlineData(Store.Sqlite)]
    public async Task ReceiverGatesIdleForADay_Go_GatesInUseStay(Store store)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(DateTime.UtcNow.Date.AddHours(12), TimeSpan.Zero));
        await using var f = Coordinator(store, time).With("Fleet:Notifications:RetentionInterval", "1.00:00:00");
        _ = f.Server;
        var now = time.GetUtcNow().UtcDateTime;
        var prefix = TestServices.UniqueName("gate") + "-";
        string[] idle = [prefix + "removed-receiver", prefix + "idle"];
        string[] kept = [prefix + "in-use", prefix + "just-freed", prefix + "freed-23h-ago"];
        await using (var db = f.Db())
        {
            db.Set<ReceiverGateRecord>().AddRange(
                new ReceiverGateRecord { Name = idle[0], NextSendAt = now.AddDays(-30) },
                new ReceiverGateRecord { Name = idle[1], NextSendAt = now - NotificationRetention.GateIdle - TimeSpan.FromSeconds(1) },
                new ReceiverGateRecord { Name = kept[0], NextSendAt = now.AddSeconds(1) },
                new ReceiverGateRecord { Name = kept[1], NextSendAt = now.AddSeconds(-1) },
                new ReceiverGateRecord { Name = kept[2], NextSendAt = now.AddHours(-23) });
            await db.SaveChangesAsync();
        }

        await f.Services.GetRequiredService<NotificationRetention>().RunOnceAsync(default);

        await using var check = f.Db();
        var left = await check.Set<ReceiverGateRecord>().AsNoTracking().Where(g => g.Name.StartsWith(prefix)).Select(g => g.Name).ToListAsync();
        Assert.Equal(kept.Order(StringComparer.Ordinal), left.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData(Store.Postgres)]
    [InlineData(Store.Sqlite)]
    public async Task AnAlertFiringLongerThanTheRetention_KeepsItsRows_SoTheRepeatIsTheNextSequence_AndTheResolvedMessageGoesOut(Store store)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var hook = new StubReceiver();
        await using var f = Coordinator(store, time).Webhook("hook", hook.Url(), "s3cret").Route(0, "hook")
            .With("Fleet:Notifications:RepeatInterval", "1.00:00:00").With("Fleet:Notifications:Retention", "30.00:00:00");
        _ = f.Server;
        var router = f.Services.GetRequiredService<NotificationRouter>();
        var retention = f.Services.GetRequiredService<NotificationRetention>();
        var rule = TestServices.UniqueName("disk-full").Replace('_', '-');
        var labels = Labels(rule, "db-1");
        var ruleId = Interlocked.Increment(ref ruleIds);
        var fingerprint = AlertLabels.Fingerprint(labels);
        var at = time.GetUtcNow().UtcDateTime;
        var firing = new AlertTransitionRecord
        {
            RuleId = ruleId, RuleName = rule, Fingerprint = fingerprint, Episode = 1, Kind = AlertTransitionKinds.Firing, Severity = "critical",
            Value = 0.95, Time = at, LabelsJson = AlertLabels.Json(labels), AnnotationsJson = AlertLabels.Json(new Dictionary<string, string> { ["summary"] = "full" }),
        };
        await using (var db = f.Db())
        {
            db.Set<AlertRecord>().Add(new AlertRecord
            {
                RuleId = ruleId, RuleName = rule, Fingerprint = fingerprint, State = AlertStates.Firing, Episode = 1, Severity = "critical",
                LabelsJson = firing.LabelsJson, AnnotationsJson = firing.AnnotationsJson, Value = 0.95, ActiveSince = at, FiringSince = at, UpdatedAt = at,
            });
            db.Set<AlertTransitionRecord>().Add(firing);
            await db.SaveChangesAsync();
        }
        f.Services.GetRequiredService<AlertTransitions>().Wake();
        async Task<List<NotificationRecord>> Mine()
        {
            await using var db = f.Db();
            return await db.Set<NotificationRecord>().AsNoTracking()
                .Where(n => db.Set<AlertTransitionRecord>().Any(t => t.Id == n.TransitionId && t.RuleId == ruleId)).OrderBy(n => n.Id).ToListAsync();
        }
        async Task BackdateAsync(TimeSpan age)
        {
            var then = time.GetUtcNow().UtcDateTime - age;
            await using var db = f.Db();
            await db.Set<NotificationRecord>().Where(n => db.Set<AlertTransitionRecord>().Any(t => t.Id == n.TransitionId && t.RuleId == ruleId))
                .ExecuteUpdateAsync(s => s.SetProperty(n => n.CreatedAt, then).SetProperty(n => n.SentAt, then));
        }
        await Eventually.UntilAsync(async () => await Mine() is [{ State: NotificationStates.Sent }], "the firing sent");

        // The rows were written 40 days ago (the clock stays: a jump of weeks makes every periodic job of the
        // coordinator catch up at once, which on SQLite holds the one write lock for minutes).
        await BackdateAsync(TimeSpan.FromDays(40));
        await retention.RunOnceAsync(default);
        Assert.Contains(await Mine(), n => n.Sequence == 0); // still firing: kept (the router may be repeating it meanwhile)

        await router.RenotifyAsync(default);
        await Eventually.UntilAsync(async () => await Mine() is [{ State: NotificationStates.Sent }, { State: NotificationStates.Sent }], "the repeat sent");
        Assert.Equal([0, 1], (await Mine()).Select(n => n.Sequence));
        await retention.RunOnceAsync(default);
        Assert.Equal(2, (await Mine()).Count);

        await using (var db = f.Db())
        {
            var now = time.GetUtcNow().UtcDateTime;
            await db.Set<AlertRecord>().Where(a => a.RuleId == ruleId).ExecuteUpdateAsync(s => s.SetProperty(a => a.State, AlertStates.Resolved).SetProperty(a => a.ResolvedAt, now));
            db.Set<AlertTransitionRecord>().Add(new AlertTransitionRecord
            {
                RuleId = ruleId, RuleName = rule, Fingerprint = fingerprint, Episode = 1, Kind = AlertTransitionKinds.Resolved, Severity = "critical",
                Value = 0.5, Time = now, LabelsJson = firing.LabelsJson, AnnotationsJson = firing.AnnotationsJson,
            });
            await db.SaveChangesAsync();
        }
        f.Services.GetRequiredService<AlertTransitions>().Wake();
        await Eventually.UntilAsync(async () => (await Mine()).Count == 3 && (await Mine()).All(n => n.State == NotificationStates.Sent), "the resolved message sent");
        var accepted = hook.Accepted.Select(r => r.Json.GetProperty("state").GetString()).ToList();
        Assert.Equal(["firing", "firing", "resolved"], accepted);
        Assert.Equal([0, 1], hook.Accepted.Take(2).Select(r => r.Json.GetProperty("sequence").GetInt32())); // one repeat, and the resolved message to who heard it fire

        await BackdateAsync(TimeSpan.FromDays(31));
        await retention.RunOnceAsync(default);
        Assert.Empty(await Mine()); // over: all of it goes
        await router.RenotifyAsync(default);
        Assert.Equal(3, hook.Requests.Count);
    }

    [Fact]
    public async Task BadRetention_StopsTheStart_NamingTheKeyAndValue()
    {
        var ex = CoordinatorFactory.StartFailure(() => NotificationsKit.Coordinator(Store.Sqlite).With("Fleet:Notifications:Retention", "00:10:00")
            .With("Fleet:Notifications:RetentionInterval", "00:00:05"));
        var message = (ex as OptionsValidationException ?? ex.InnerException as OptionsValidationException ?? throw ex).Message;
        Assert.Contains("Fleet:Notifications:Retention: '00:10:00' must be between 1 day and 3650 days.", message);
        Assert.Contains("Fleet:Notifications:RetentionInterval: '00:00:05' must be between 1 minute and 1 day.", message);
    }
}
