using System.Net;
using System.Text;
using System.Text.Json;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Checklists;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Coordinator.Tests.Runs;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using V1TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Coordinator.Tests.Checklists;

/// <summary>
/// Checklists against real storage (SQLite and PostgreSQL, a fresh database per test so runs never leak between tests),
/// runs written as the Runs feature stores them, and a fake clock for "now".
/// </summary>
public sealed class ChecklistsTests
{
    public static TheoryData<Store> Stores => new() { Store.Sqlite, Store.Postgres };

    const string Definitions = """
        items:
          - { id: daily-health, title: Daily health, period: daily, tasks: [health.check] }
          - { id: weekly-health, title: Weekly health, period: weekly, tasks: [health.check, service.status] }
          - { id: monthly-health, title: Monthly health, period: monthly, tasks: [health.check] }
          - { id: quarterly-health, title: Quarterly health, period: quarterly, tasks: [health.check] }
          - { id: weekly-review, title: Weekly review, period: weekly }
          - { id: dr-drill, title: Disaster recovery drill, period: quarterly }
          - { id: probed-today, title: Probe ran, period: daily, tasks: [probe] }
        """;

    // Wednesday of 2027-W03; every period before it is over.
    static readonly DateTimeOffset Now = new(2027, 1, 20, 12, 0, 0, TimeSpan.Zero);

    sealed class Harness : IAsyncDisposable
    {
        public required CoordinatorFactory Coordinator { get; init; }
        public required PostgresDatabase? Postgres { get; init; }
        public required FakeTimeProvider? Time { get; init; }

        public Fleet.Protocol.V1.Checklists.ChecklistsClient Client(string user = "alice") => new(Coordinator.Channel(user));

        public async ValueTask DisposeAsync()
        {
            Coordinator.Dispose();
            if (Postgres is not null) await Postgres.DisposeAsync();
        }
    }

    static async Task<Harness> StartAsync(Store store, bool fakeTime = true, DateTimeOffset? now = null)
    {
        PostgresDatabase? postgres = null;
        if (store == Store.Postgres)
        {
            postgres = new PostgresDatabase();
            await postgres.InitializeAsync();
        }
        var coordinator = new CoordinatorFactory(store, postgres?.ConnectionString).Fast();
        var file = Path.Combine(coordinator.DataDirectory, "checklists.yaml");
        await File.WriteAllTextAsync(file, Definitions);
        coordinator.With("Fleet:Checklists:File", file);
        // Start the fake clock where the test needs it: moving it by days would fire every periodic timer of the
        // coordinator once per period on the way.
        var time = fakeTime ? new FakeTimeProvider(now ?? Now) : null;
        if (time is not null) coordinator.WithTime(time);
        _ = coordinator.Server; // start (migrates)
        return new Harness { Coordinator = coordinator, Postgres = postgres, Time = time };
    }

    static async Task AddRunAsync(Harness h, string id, string task, string finishedAt, RunStatus status = RunStatus.Succeeded, bool dryRun = false)
    {
        var finished = DateTime.Parse(finishedAt, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AdjustToUniversal);
        await using var db = h.Coordinator.Db();
        db.Runs.Add(new RunRecord
        {
            Id = id, Task = task, CreatedBy = "test", CreatedAt = finished.AddMinutes(-1), Status = status, FinishedAt = finished, DryRun = dryRun,
        });
        await db.SaveChangesAsync();
    }

    /// <summary>The runs of the boundary scenario (see the test below for what each one proves).</summary>
    static async Task AddBoundaryRunsAsync(Harness h)
    {
        await AddRunAsync(h, "r-sunday-last-second", "health.check", "2026-11-29T23:59:59.999999Z");
        await AddRunAsync(h, "r-monday-midnight", "health.check", "2026-11-30T00:00:00Z");
        await AddRunAsync(h, "r-failed", "health.check", "2026-12-08T10:00:00Z", RunStatus.Failed);
        await AddRunAsync(h, "r-cancelled", "health.check", "2026-12-09T10:00:00Z", RunStatus.Cancelled);
        await AddRunAsync(h, "r-dry-run", "health.check", "2026-12-15T10:00:00Z", dryRun: true);
        await AddRunAsync(h, "r-other-task", "logs.scan", "2026-12-22T10:00:00Z");
        await AddRunAsync(h, "r-new-years-eve", "health.check", "2026-12-31T23:59:59Z");
        await AddRunAsync(h, "r-service-status", "service.status", "2027-01-02T08:00:00Z");
        await AddRunAsync(h, "r-jan-3", "health.check", "2027-01-03T23:59:59Z");
    }

    static async Task<ChecklistPeriod> PeriodAsync(Harness h, string period)
    {
        var response = await h.Client().GetChecklistsAsync(new GetChecklistsRequest { Period = period });
        return Assert.Single(response.Periods);
    }

    static ChecklistItem Item(ChecklistPeriod period, string id) => period.Items.Single(i => i.Id == id);

    static string[] RunIds(ChecklistItem item) => item.Runs.Select(r => r.RunId).ToArray();

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Evidence_AttachesToTheUtcPeriodItFinishedIn_AtWeekMonthQuarterAndYearBoundaries(Store store)
    {
        await using var h = await StartAsync(store);
        await AddBoundaryRunsAsync(h);

        async Task<(ChecklistItemStatus Status, string Runs, int Count)> Weekly(string period)
        {
            var item = Item(await PeriodAsync(h, period), "weekly-health");
            return (item.Status, string.Join(",", RunIds(item)), item.RunCount);
        }

        // 23:59:59 Sunday UTC counts for that ISO week, 00:00:00 Monday for the next.
        Assert.Equal((ChecklistItemStatus.Done, "r-sunday-last-second", 1), await Weekly("2026-W48"));
        Assert.Equal((ChecklistItemStatus.Done, "r-monday-midnight", 1), await Weekly("2026-W49"));
        // Failed, cancelled and dry runs are not evidence, nor is a run of a task the item does not name.
        Assert.Equal((ChecklistItemStatus.Missed, "", 0), await Weekly("2026-W50"));
        Assert.Equal((ChecklistItemStatus.Missed, "", 0), await Weekly("2026-W51"));
        Assert.Equal((ChecklistItemStatus.Missed, "", 0), await Weekly("2026-W52"));
        // 2026 has 53 ISO weeks: 31 December and 3 January are both in 2026-W53; any named task counts; newest first.
        Assert.Equal((ChecklistItemStatus.Done, "r-jan-3,r-service-status,r-new-years-eve", 3), await Weekly("2026-W53"));
        Assert.Equal((ChecklistItemStatus.Missed, "", 0), await Weekly("2027-W01"));

        var november = Item(await PeriodAsync(h, "2026-11"), "monthly-health");
        Assert.Equal(["r-monday-midnight", "r-sunday-last-second"], RunIds(november));
        var december = Item(await PeriodAsync(h, "2026-12"), "monthly-health");
        Assert.Equal(["r-new-years-eve"], RunIds(december));
        var january = Item(await PeriodAsync(h, "2027-01"), "monthly-health");
        Assert.Equal((ChecklistItemStatus.Done, "r-jan-3"), (january.Status, string.Join(",", RunIds(january))));

        var q4 = Item(await PeriodAsync(h, "2026-Q4"), "quarterly-health");
        Assert.Equal((ChecklistItemStatus.Done, 3), (q4.Status, q4.RunCount));
        var q1 = await PeriodAsync(h, "2027-Q1");
        Assert.Equal(["r-jan-3"], RunIds(Item(q1, "quarterly-health")));
        Assert.False(q1.Over);
        Assert.Equal(new DateTime(2027, 1, 1, 0, 0, 0, DateTimeKind.Utc), q1.Start.ToDateTime());
        Assert.Equal(new DateTime(2027, 4, 1, 0, 0, 0, DateTimeKind.Utc), q1.End.ToDateTime());

        Assert.Equal(ChecklistItemStatus.Done, Item(await PeriodAsync(h, "2027-01-03"), "daily-health").Status);
        Assert.Equal(ChecklistItemStatus.Missed, Item(await PeriodAsync(h, "2027-01-04"), "daily-health").Status);
        var evidence = Item(await PeriodAsync(h, "2027-01-03"), "daily-health").Runs.Single();
        Assert.Equal(("health.check", "/api/v1/runs/r-jan-3", new DateTime(2027, 1, 3, 23, 59, 59, DateTimeKind.Utc)),
            (evidence.Task, evidence.Link, evidence.FinishedAt.ToDateTime()));
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task WithoutEvidence_AnItemIsPendingUntilItsPeriodEnds_ThenMissed(Store store)
    {
        // The last second of Sunday 2027-01-24, the end of 2027-W03.
        await using var h = await StartAsync(store, now: new DateTimeOffset(2027, 1, 24, 23, 59, 59, TimeSpan.Zero));

        var current = await h.Client().GetChecklistsAsync(new GetChecklistsRequest());
        Assert.Equal(["2027-01-24", "2027-W03", "2027-01", "2027-Q1"], current.Periods.Select(p => p.Period));
        Assert.Equal(["daily", "weekly", "monthly", "quarterly"], current.Periods.Select(p => p.Kind));
        Assert.All(current.Periods, p => Assert.False(p.Over));
        Assert.All(current.Periods.SelectMany(p => p.Items), i => Assert.Equal(ChecklistItemStatus.Pending, i.Status));
        Assert.Equal(["weekly-health", "weekly-review"], current.Periods[1].Items.Select(i => i.Id));

        // Future periods are pending too; the previous week is over.
        Assert.Equal(ChecklistItemStatus.Pending, Item(await PeriodAsync(h, "2027-W10"), "weekly-review").Status);
        Assert.Equal(ChecklistItemStatus.Missed, Item(await PeriodAsync(h, "2027-W02"), "weekly-review").Status);

        // Monday 00:00:00 UTC the week is over.
        h.Time!.Advance(TimeSpan.FromSeconds(1));
        var over = await PeriodAsync(h, "2027-W03");
        Assert.True(over.Over);
        Assert.Equal(ChecklistItemStatus.Missed, Item(over, "weekly-health").Status);
        Assert.Equal(ChecklistItemStatus.Missed, Item(over, "weekly-review").Status);
        Assert.Equal(ChecklistItemStatus.Pending, Item(await PeriodAsync(h, "2027-01"), "monthly-health").Status);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task MissedAsync_ListsTheItemsMissedInTheLastFinishedPeriodOfEachKind(Store store)
    {
        await using var h = await StartAsync(store);
        await AddBoundaryRunsAsync(h);

        var missed = await h.Coordinator.Services.GetRequiredService<ChecklistStatus>().MissedAsync(CancellationToken.None);

        // Yesterday (2027-01-19), last week (2027-W02), last month (2026-12: health checked) and last quarter (2026-Q4).
        Assert.Equal(
            ["daily-health@2027-01-19", "probed-today@2027-01-19", "weekly-health@2027-W02", "weekly-review@2027-W02", "dr-drill@2026-Q4"],
            missed.Select(m => $"{m.Item.Id}@{m.Period.Text}"));
        Assert.All(missed, m => Assert.Equal(ChecklistState.Missed, m.State));
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task SignOff_MarksAManualItemDone_IsAuditedInTheSameTransaction_AndASecondOneIsAlreadyExists(Store store)
    {
        await using var h = await StartAsync(store);

        var signed = await h.Client("alice").SignChecklistItemAsync(new SignChecklistItemRequest { Item = "weekly-review", Comment = "  reviewed dashboards, ticket OPS-12  " });

        Assert.Equal(("weekly-review", "2027-W03", ChecklistItemStatus.Done), (signed.Id, signed.Period, signed.Status));
        Assert.Equal(("alice", "reviewed dashboards, ticket OPS-12", Now.UtcDateTime), (signed.SignOff.SignedBy, signed.SignOff.Comment, signed.SignOff.SignedAt.ToDateTime()));
        var week = await PeriodAsync(h, "2027-W03");
        Assert.Equal("alice", Item(week, "weekly-review").SignOff.SignedBy);
        Assert.Equal(ChecklistItemStatus.Pending, Item(week, "weekly-health").Status);
        Assert.Null(Item(await PeriodAsync(h, "2027-W02"), "weekly-review").SignOff);

        var again = await Assert.ThrowsAsync<RpcException>(() => h.Client("bob").SignChecklistItemAsync(
            new SignChecklistItemRequest { Item = "weekly-review", Period = "2027-W03", Comment = "me too" }).ResponseAsync);
        Assert.Equal(StatusCode.AlreadyExists, again.StatusCode);
        Assert.Contains("already signed off for 2027-W03 by alice", again.Status.Detail);

        // A late sign-off of a past period is allowed (and recorded with the time it was made).
        var late = await h.Client("bob").SignChecklistItemAsync(new SignChecklistItemRequest { Item = "dr-drill", Period = "2026-Q4", Comment = "drill report DR-4" });
        Assert.Equal(("2026-Q4", ChecklistItemStatus.Done), (late.Period, late.Status));

        await using var db = h.Coordinator.Db();
        var audit = await db.Set<AuditRecord>().AsNoTracking().Where(a => a.Action == "checklist.signed").OrderBy(a => a.Target).ToListAsync();
        Assert.Equal([("checklist:dr-drill/2026-Q4", "bob"), ("checklist:weekly-review/2027-W03", "alice")], audit.Select(a => (a.Target, a.Actor)));
        Assert.Contains("reviewed dashboards, ticket OPS-12", audit[1].ParametersJson);
        Assert.Equal(2, await db.ChecklistSignOffs.CountAsync());
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task ConcurrentSignOffs_OfTheSameItemAndPeriod_StoreOne_TheOthersAreAlreadyExists(Store store)
    {
        await using var h = await StartAsync(store);

        var attempts = Enumerable.Range(0, 6).Select(async n =>
        {
            try
            {
                await h.Client($"op{n}").SignChecklistItemAsync(new SignChecklistItemRequest { Item = "dr-drill", Period = "2027-Q1", Comment = $"attempt {n}" });
                return StatusCode.OK;
            }
            catch (RpcException ex)
            {
                return ex.StatusCode;
            }
        });
        var outcomes = await Task.WhenAll(attempts);

        Assert.Equal(1, outcomes.Count(o => o == StatusCode.OK));
        Assert.Equal(5, outcomes.Count(o => o == StatusCode.AlreadyExists));
        await using var db = h.Coordinator.Db();
        Assert.Equal(1, await db.ChecklistSignOffs.CountAsync());
        Assert.Equal(1, await db.Set<AuditRecord>().CountAsync(a => a.Action == "checklist.signed"));
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task BadRequests_AnswerAClearError_NamingTheFieldAndValue(Store store)
    {
        await using var h = await StartAsync(store);
        var client = h.Client();

        async Task<RpcException> Fails(Func<AsyncUnaryCall<ChecklistItem>> call) => await Assert.ThrowsAsync<RpcException>(() => call().ResponseAsync);

        var period = await Assert.ThrowsAsync<RpcException>(() => client.GetChecklistsAsync(new GetChecklistsRequest { Period = "2026-W54" }).ResponseAsync);
        Assert.Equal((StatusCode.InvalidArgument, "period: '2026-W54' is not a period (YYYY-MM-DD, YYYY-Www (ISO week), YYYY-MM or YYYY-Qn, UTC)"),
            (period.StatusCode, period.Status.Detail));

        var unknown = await Fails(() => client.SignChecklistItemAsync(new SignChecklistItemRequest { Item = "no-such-item", Comment = "x" }));
        Assert.Equal((StatusCode.NotFound, "item: 'no-such-item' is not a checklist item"), (unknown.StatusCode, unknown.Status.Detail));

        var automatic = await Fails(() => client.SignChecklistItemAsync(new SignChecklistItemRequest { Item = "weekly-health", Comment = "x" }));
        Assert.Equal(StatusCode.FailedPrecondition, automatic.StatusCode);
        Assert.Contains("item: 'weekly-health' is automatic", automatic.Status.Detail);

        var kind = await Fails(() => client.SignChecklistItemAsync(new SignChecklistItemRequest { Item = "weekly-review", Period = "2027-01", Comment = "x" }));
        Assert.Equal((StatusCode.InvalidArgument, "period: '2027-01' is a monthly period; item 'weekly-review' is weekly"), (kind.StatusCode, kind.Status.Detail));

        var future = await Fails(() => client.SignChecklistItemAsync(new SignChecklistItemRequest { Item = "weekly-review", Period = "2027-W04", Comment = "x" }));
        Assert.Equal((StatusCode.InvalidArgument, "period: '2027-W04' has not started yet"), (future.StatusCode, future.Status.Detail));

        var badPeriod = await Fails(() => client.SignChecklistItemAsync(new SignChecklistItemRequest { Item = "weekly-review", Period = "next week", Comment = "x" }));
        Assert.Equal(StatusCode.InvalidArgument, badPeriod.StatusCode);
        Assert.StartsWith("period: 'next week' is not a period", badPeriod.Status.Detail);

        var comment = await Fails(() => client.SignChecklistItemAsync(new SignChecklistItemRequest { Item = "weekly-review", Comment = "   " }));
        Assert.Equal(StatusCode.InvalidArgument, comment.StatusCode);
        Assert.StartsWith("comment: required", comment.Status.Detail);

        var longComment = await Fails(() => client.SignChecklistItemAsync(new SignChecklistItemRequest { Item = "weekly-review", Comment = new string('x', 1001) }));
        Assert.Equal((StatusCode.InvalidArgument, "comment: 1001 characters; at most 1000"), (longComment.StatusCode, longComment.Status.Detail));

        await using var db = h.Coordinator.Db();
        Assert.Equal(0, await db.ChecklistSignOffs.CountAsync());
        Assert.Equal(0, await db.Set<AuditRecord>().CountAsync(a => a.Action == "checklist.signed"));
    }

    [Fact]
    public async Task Rest_ServesTheChecklists_AndMapsErrorsTo400_404_409()
    {
        await using var h = await StartAsync(Store.Sqlite);
        await AddBoundaryRunsAsync(h);
        using var http = h.Coordinator.CreateClient();

        using var ok = await http.GetAsync("/api/v1/checklists?period=2026-W48");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        using var json = JsonDocument.Parse(await ok.Content.ReadAsStringAsync());
        var period = json.RootElement.GetProperty("periods")[0];
        Assert.Equal("2026-W48", period.GetProperty("period").GetString());
        var item = period.GetProperty("items").EnumerateArray().Single(i => i.GetProperty("id").GetString() == "weekly-health");
        Assert.Equal("CHECKLIST_ITEM_STATUS_DONE", item.GetProperty("status").GetString());
        Assert.Equal("/api/v1/runs/r-sunday-last-second", item.GetProperty("runs")[0].GetProperty("link").GetString());

        using var bad = await http.GetAsync("/api/v1/checklists?period=2026-13");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("period: '2026-13'", await bad.Content.ReadAsStringAsync());

        static StringContent Body(string comment) => new(JsonSerializer.Serialize(new { comment }), Encoding.UTF8, "application/json");
        using var unknown = await http.PostAsync("/api/v1/checklists/current/items/nope:sign", Body("x"));
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Contains("item: 'nope'", await unknown.Content.ReadAsStringAsync());

        using var signed = await http.PostAsync("/api/v1/checklists/2027-Q1/items/dr-drill:sign", Body("drill done"));
        Assert.Equal(HttpStatusCode.OK, signed.StatusCode);
        using var twice = await http.PostAsync("/api/v1/checklists/2027-Q1/items/dr-drill:sign", Body("again"));
        Assert.Equal(HttpStatusCode.Conflict, twice.StatusCode);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task ARealRunThatSucceededOnEveryHost_IsEvidence_OneWithAFailedHostIsNot(Store store)
    {
        await using var h = await StartAsync(store, fakeTime: false);
        await using var a = await FakeAgent.ConnectAsync(h.Coordinator, FakeAgent.NewId("a"));
        await using var b = await FakeAgent.ConnectAsync(h.Coordinator, FakeAgent.NewId("b"));
        var runs = h.Coordinator.Runs();

        var partial = await runs.CreateRunAsync(RunsTestKit.Probe(a.Id, b.Id));
        await a.RunNextAsync(V1TaskStatus.Succeeded);
        await b.RunNextAsync(V1TaskStatus.Failed);
        Assert.Equal(RunStatus.Failed, (await runs.FinishedAsync(partial.Id)).Status);
        Assert.Equal(ChecklistItemStatus.Pending, Item(Assert.Single((await h.Client().GetChecklistsAsync(new GetChecklistsRequest())).Periods, p => p.Kind == "daily"), "probed-today").Status);

        var full = await runs.CreateRunAsync(RunsTestKit.Probe(a.Id, b.Id));
        await a.RunNextAsync(V1TaskStatus.Succeeded);
        await b.RunNextAsync(V1TaskStatus.Succeeded);
        Assert.Equal(RunStatus.Succeeded, (await runs.FinishedAsync(full.Id)).Status);

        var today = Assert.Single((await h.Client().GetChecklistsAsync(new GetChecklistsRequest())).Periods, p => p.Kind == "daily");
        var item = Item(today, "probed-today");
        Assert.Equal((ChecklistItemStatus.Done, full.Id, 1), (item.Status, string.Join(",", RunIds(item)), item.RunCount));
    }
}
