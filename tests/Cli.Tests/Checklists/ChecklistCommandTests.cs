using System.Text.Json;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Tests.Checklists;

/// <summary>fleetctl checklist and checklist sign against a real loopback gRPC server.</summary>
public sealed class ChecklistCommandTests : IAsyncLifetime
{
    private FakeChecklistsCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync()
    {
        _coordinator = await FakeChecklistsCoordinator.StartAsync();
        _coordinator.Checklists.Response = Sample();
    }

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private static Timestamp T(int year, int month, int day, int hour = 0, int minute = 0, int second = 0) =>
        Timestamp.FromDateTime(new DateTime(year, month, day, hour, minute, second, DateTimeKind.Utc));

    private static GetChecklistsResponse Sample() => new()
    {
        Periods =
        {
            new ChecklistPeriod
            {
                Period = "2025-03-14", Kind = "daily", Start = T(2025, 3, 14), End = T(2025, 3, 15),
                Items =
                {
                    new ChecklistItem
                    {
                        Id = "check-system-health", Title = "Check system health", Kind = "daily", Automatic = true, Tasks = { "health.check" },
                        Status = ChecklistItemStatus.Done, RunCount = 3,
                        Runs = { new ChecklistRunEvidence { RunId = "r-01abc", Task = "health.check", FinishedAt = T(2025, 3, 14, 6, 0, 12), Link = "/api/v1/runs/r-01abc" } },
                    },
                    new ChecklistItem
                    {
                        Id = "review-error-logs", Title = "Review error logs", Kind = "daily", Automatic = true, Tasks = { "logs.scan" },
                        Status = ChecklistItemStatus.Pending,
                    },
                    new ChecklistItem { Id = "verify-backups", Title = "Verify backups", Kind = "daily", Status = ChecklistItemStatus.Pending },
                },
            },
            new ChecklistPeriod
            {
                Period = "2025-W10", Kind = "weekly", Start = T(2025, 3, 3), End = T(2025, 3, 10), Over = true,
                Items =
                {
                    new ChecklistItem { Id = "clean-up-logs", Title = "Clean up logs", Kind = "weekly", Status = ChecklistItemStatus.Missed },
                    new ChecklistItem
                    {
                        Id = "run-security-scans", Title = "Run security scans", Kind = "weekly", Status = ChecklistItemStatus.Done,
                        SignOff = new ChecklistSignOff { SignedBy = "alice", SignedAt = T(2025, 3, 7, 16, 30), Comment = "scan report SEC-88" },
                    },
                },
            },
        },
    };

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    [Fact]
    public async Task Checklist_PrintsATablePerPeriod_WithStatusKindAndEvidence()
    {
        var run = await Run("checklist");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(
            [
                "Daily 2025-03-14 (2025-03-14 UTC): 1 done, 2 pending, 0 missed",
                "  STATUS       ITEM                 KIND    EVIDENCE",
                "  [x] done     check-system-health  auto    run r-01abc health.check finished 2025-03-14 06:00:12Z (+2 more)",
                "  [ ] pending  review-error-logs    auto    waiting for a successful run of logs.scan",
                "  [ ] pending  verify-backups       manual  sign: fleetctl checklist sign verify-backups --comment ...",
                "Weekly 2025-W10 (2025-03-03 to 2025-03-09 UTC, over): 1 done, 0 pending, 1 missed",
                "  STATUS      ITEM                KIND    EVIDENCE",
                "  [!] missed  clean-up-logs       manual  not signed off",
                "  [x] done    run-security-scans  manual  signed by alice at 2025-03-07 16:30Z: scan report SEC-88",
            ],
            run.StdoutLines);
        Assert.Equal("", Assert.Single(_coordinator.Checklists.Gets).Period);
    }

    [Theory]
    [InlineData("2025-W10")]
    [InlineData("2025-03")]
    [InlineData("2025-Q1")]
    [InlineData("2025-03-14")]
    public async Task Checklist_Period_IsSentAsGiven(string period)
    {
        var run = await Run("checklist", "--period", period);

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(period, Assert.Single(_coordinator.Checklists.Gets).Period);
    }

    [Fact]
    public async Task Checklist_Json_PrintsTheRestShape()
    {
        var run = await Run("checklist", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var json = JsonDocument.Parse(run.Stdout);
        var periods = json.RootElement.GetProperty("periods");
        Assert.Equal(["2025-03-14", "2025-W10"], periods.EnumerateArray().Select(p => p.GetProperty("period").GetString()));
        var first = periods[0].GetProperty("items")[0];
        Assert.Equal("CHECKLIST_ITEM_STATUS_DONE", first.GetProperty("status").GetString());
        Assert.Equal("/api/v1/runs/r-01abc", first.GetProperty("runs")[0].GetProperty("link").GetString());
        Assert.Equal("alice", periods[1].GetProperty("items")[1].GetProperty("signOff").GetProperty("signedBy").GetString());
    }

    [Theory]
    [InlineData("last-week")]
    [InlineData("2025-3")]
    [InlineData("current")]
    public async Task Checklist_BadPeriod_IsAUsageError_WithoutCallingTheCoordinator(string period)
    {
        var run = await Run("checklist", "--period", period);

        Assert.Equal(2, run.ExitCode);
        Assert.Contains($"invalid --period value '{period}': expected YYYY-MM-DD, YYYY-Www, YYYY-MM or YYYY-Qn", run.Stderr);
        Assert.Empty(_coordinator.Checklists.Gets);
    }

    [Fact]
    public async Task Checklist_ThePeriodTheCoordinatorRejects_IsReportedOnOneLine()
    {
        var run = await Run("checklist", "--period", "2026-W54");

        Assert.Equal(1, run.ExitCode);
        Assert.Contains("period: '2026-W54' is not a period", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Sign_SendsItemCommentAndPeriod_AsTheUser_AndPrintsTheSignOff()
    {
        var run = await Run("--user", "bob", "checklist", "sign", "compliance-audit", "--comment", "  audit report CA-7 ", "--period", "2025-Q1");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(["Signed off compliance-audit (Compliance audit) for 2025-Q1: signed by bob at 2025-03-14 15:09Z: audit report CA-7"], run.StdoutLines);
        var (request, user) = Assert.Single(_coordinator.Checklists.Signs);
        Assert.Equal(("compliance-audit", "audit report CA-7", "2025-Q1", "bob"), (request.Item, request.Comment, request.Period, user));
    }

    [Fact]
    public async Task Sign_WithoutPeriod_SignsTheCurrentPeriod_AndJsonPrintsTheItem()
    {
        var run = await Run("checklist", "sign", "compliance-audit", "-m", "done", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", Assert.Single(_coordinator.Checklists.Signs).Request.Period);
        using var json = JsonDocument.Parse(run.Stdout);
        Assert.Equal("done", json.RootElement.GetProperty("signOff").GetProperty("comment").GetString());
    }

    [Fact]
    public async Task Sign_Twice_ReportsAlreadySigned_AndUnknownItemsAreNamed()
    {
        Assert.Equal(0, (await Run("checklist", "sign", "compliance-audit", "--comment", "first")).ExitCode);

        var twice = await Run("checklist", "sign", "compliance-audit", "--comment", "second");
        Assert.Equal(1, twice.ExitCode);
        Assert.Contains("already signed off for 2025-Q1", Assert.Single(twice.StderrLines));

        var unknown = await Run("checklist", "sign", "nope", "--comment", "x");
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains("item: 'nope' is not a checklist item", Assert.Single(unknown.StderrLines));
    }

    [Theory]
    [InlineData(new[] { "checklist", "sign", "compliance-audit" }, "--comment")]
    [InlineData(new[] { "checklist", "sign", "compliance-audit", "--comment", " " }, "--comment must not be empty")]
    [InlineData(new[] { "checklist", "sign", "--comment", "x" }, "Required argument missing for command: 'sign'")]
    [InlineData(new[] { "checklist", "sign", "compliance-audit", "--comment", "x", "--period", "Q1" }, "invalid --period value 'Q1'")]
    public async Task Sign_UsageErrors_ExitWith2(string[] args, string expected)
    {
        var run = await Run(args);

        Assert.Equal(2, run.ExitCode);
        Assert.Contains(expected, run.Stderr);
        Assert.Empty(_coordinator.Checklists.Signs);
    }
}
