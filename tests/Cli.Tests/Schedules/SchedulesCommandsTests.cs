using System.Text.Json;
using System.Text.RegularExpressions;
using Fleet.Protocol.V1;

namespace Fleet.Cli.Tests.Schedules;

/// <summary>fleetctl schedules list|show|delete|pause|resume|preview|run-now|history and fleetctl windows against the fake Schedules service.</summary>
public sealed class SchedulesCommandsTests : IAsyncLifetime
{
    private FakeSchedulesCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    public async Task InitializeAsync()
    {
        _coordinator = await FakeSchedulesCoordinator.StartAsync();
        foreach (var schedule in new[] { SchedulesFleet.Daily(), SchedulesFleet.Berlin(), SchedulesFleet.Paused() })
            _coordinator.Service.Stored[schedule.Id] = schedule;
    }

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    [Fact]
    public async Task List_prints_next_fire_in_utc_and_in_the_zone_with_state_and_disabled_steps_sorted_by_id()
    {
        var run = await Run("schedules", "list");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(4, run.StdoutLines.Length);
        Assert.Matches(@"^ID\s+NAME\s+CRON\s+ZONE\s+DURATION\s+NEXT FIRE \(UTC\)\s+NEXT FIRE \(LOCAL\)\s+STATE\s+STEPS\s+DISABLED STEPS$", run.StdoutLines[0]);
        Assert.Matches(@"^daily-health-checks\s+Daily health checks\s+0 6 \* \* \*\s+UTC\s+15m\s+2025-03-15T06:00:00Z\s+2025-03-15T06:00:00\+00:00\s+enabled\s+2\s+security\.scan \(task-unavailable\)$", run.StdoutLines[1]);
        Assert.Matches(@"^monthly-review\s+Monthly review\s+0 1 \* \* SUN#1\s+UTC\s+4h\s+-\s+-\s+paused\s+1\s+-$", run.StdoutLines[2]);
        // Spring forward in Berlin on 2025-03-30: 01:00Z is 03:00 CEST.
        Assert.Matches(@"^nightly-berlin\s+Nightly Berlin\s+0 3 \* \* \*\s+Europe/Berlin\s+2h\s+2025-03-30T01:00:00Z\s+2025-03-30T03:00:00\+02:00\s+enabled\s+1\s+-$", run.StdoutLines[3]);
        Assert.Equal("test-operator", _coordinator.Service.Calls.Single().User);
    }

    [Fact]
    public async Task List_json_is_the_rest_shape()
    {
        var run = await Run("schedules", "list", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var document = JsonDocument.Parse(run.Stdout);
        var daily = document.RootElement.GetProperty("schedules").EnumerateArray().Single(s => s.GetProperty("id").GetString() == "daily-health-checks");
        Assert.Equal("0 6 * * *", daily.GetProperty("cron").GetString());
        Assert.Equal("task-unavailable", daily.GetProperty("steps")[1].GetProperty("disabledReason").GetString());
        Assert.True(daily.GetProperty("steps")[1].GetProperty("disabled").GetBoolean());
    }

    [Fact]
    public async Task List_of_nothing_says_so_on_stderr_and_exits_0()
    {
        _coordinator.Service.Stored.Clear();

        var run = await Run("schedules", "list");

        Assert.Equal((0, "", "No schedules."), (run.ExitCode, run.Stdout, Assert.Single(run.StderrLines)));
    }

    [Fact]
    public async Task Show_by_name_prints_the_definition_and_each_steps_availability()
    {
        var run = await Run("schedules", "show", "daily HEALTH checks");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("daily-health-checks", Assert.Single(_coordinator.Service.Received<ScheduleRequest>()).Id);
        var lines = run.StdoutLines;
        Assert.Contains("ID:          daily-health-checks", lines);
        Assert.Contains("Cron:        0 6 * * *", lines);
        Assert.Contains("Targets:     *", lines);
        Assert.Contains("Next fire:   2025-03-15T06:00:00Z (2025-03-15T06:00:00+00:00 UTC)", lines);
        Assert.Contains("Source:      defaults", lines);
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^0\s+Health\s+health\.check\s+-\s+continue\s+-\s+-\s+-\s+yes$"));
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^1\s+Scan\s+security\.scan\s+-\s+continue\s+-\s+-\s+-\s+no \(task-unavailable\)$"));
    }

    [Fact]
    public async Task Show_of_an_unknown_name_is_not_found_with_exit_1()
    {
        var run = await Run("schedules", "show", "Weekly nothing");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.Equal("fleetctl: not found: no schedule has the id or name 'Weekly nothing' (fleetctl schedules list shows them)", Assert.Single(run.StderrLines));
        Assert.Equal(["ListSchedules"], _coordinator.Service.Methods);
    }

    [Fact]
    public async Task An_unknown_id_is_asked_for_and_the_coordinators_not_found_is_reported()
    {
        var run = await Run("schedules", "history", "weekly-nothing");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("fleetctl: not found: schedule 'weekly-nothing' not found", Assert.Single(run.StderrLines));
        Assert.Equal("weekly-nothing", Assert.Single(_coordinator.Service.Received<ListOccurrencesRequest>()).Id);
    }

    [Fact]
    public async Task A_name_two_schedules_share_is_refused_with_their_ids()
    {
        var twin = SchedulesFleet.Paused();
        twin.Id = "monthly-review-2";
        twin.Name = "Daily health checks";
        _coordinator.Service.Stored[twin.Id] = twin;

        var run = await Run("schedules", "pause", "Daily health checks");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("fleetctl: invalid argument: 2 schedules are named 'Daily health checks'; use the id (monthly-review-2, daily-health-checks)", Assert.Single(run.StderrLines));
        Assert.Empty(_coordinator.Service.Received<ScheduleRequest>());
    }

    [Fact]
    public async Task Pause_and_resume_report_the_state_and_next_window()
    {
        var pause = await Run("schedules", "pause", "nightly-berlin");
        var resume = await Run("schedules", "resume", "nightly-berlin");

        Assert.Equal((0, "Schedule nightly-berlin is paused."), (pause.ExitCode, Assert.Single(pause.StdoutLines)));
        Assert.Equal((0, "Schedule nightly-berlin is enabled; next window 2025-03-14T18:09:26Z (2025-03-14T19:09:26+01:00 Europe/Berlin)."),
            (resume.ExitCode, Assert.Single(resume.StdoutLines)));
        Assert.Equal(["ListSchedules", "PauseSchedule", "ListSchedules", "ResumeSchedule"], _coordinator.Service.Methods);
    }

    [Fact]
    public async Task Delete_without_yes_is_refused_with_exit_2_and_nothing_sent()
    {
        var run = await Run("schedules", "delete", "daily-health-checks");

        Assert.Equal(2, run.ExitCode);
        Assert.Equal("fleetctl: deleting schedule 'daily-health-checks' cannot be undone: add --yes to confirm", Assert.Single(run.StderrLines));
        Assert.Empty(_coordinator.Service.Calls);
        Assert.True(_coordinator.Service.Stored.ContainsKey("daily-health-checks"));
    }

    [Fact]
    public async Task Delete_with_yes_by_name_deletes_the_schedule()
    {
        var run = await Run("schedules", "delete", "Monthly review", "--yes");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("Deleted schedule monthly-review.", Assert.Single(run.StdoutLines));
        Assert.False(_coordinator.Service.Stored.ContainsKey("monthly-review"));
    }

    [Fact]
    public async Task Preview_prints_utc_and_zone_times_and_the_overlaps()
    {
        _coordinator.Service.Preview = new PreviewScheduleResponse
        {
            ScheduleId = "nightly-berlin", TimeZone = "Europe/Berlin",
            Fires =
            {
                new PreviewFire
                {
                    Start = SchedulesFleet.At(new DateTimeOffset(2025, 3, 29, 2, 0, 0, TimeSpan.Zero)), End = SchedulesFleet.At(new DateTimeOffset(2025, 3, 29, 4, 0, 0, TimeSpan.Zero)),
                    LocalStart = "2025-03-29T03:00:00+01:00", LocalEnd = "2025-03-29T05:00:00+01:00",
                },
                new PreviewFire
                {
                    Start = SchedulesFleet.At(new DateTimeOffset(2025, 3, 30, 1, 0, 0, TimeSpan.Zero)), End = SchedulesFleet.At(new DateTimeOffset(2025, 3, 30, 3, 0, 0, TimeSpan.Zero)),
                    LocalStart = "2025-03-30T03:00:00+02:00", LocalEnd = "2025-03-30T05:00:00+02:00",
                    Overlaps =
                    {
                        new WindowOverlap
                        {
                            ScheduleId = "monthly-review", SharedHosts = 1,
                            Start = SchedulesFleet.At(new DateTimeOffset(2025, 3, 30, 1, 0, 0, TimeSpan.Zero)), End = SchedulesFleet.At(new DateTimeOffset(2025, 3, 30, 5, 0, 0, TimeSpan.Zero)),
                        },
                    },
                },
            },
        };

        var run = await Run("schedules", "preview", "nightly-berlin", "--count", "2");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(2, Assert.Single(_coordinator.Service.Received<PreviewScheduleRequest>()).Count);
        var lines = run.StdoutLines;
        Assert.Equal("Next 2 windows of schedule nightly-berlin (zone Europe/Berlin):", lines[0]);
        Assert.Matches(@"^START \(UTC\)\s+END \(UTC\)\s+START \(Europe/Berlin\)\s+END \(Europe/Berlin\)\s+OVERLAPS$", lines[1]);
        Assert.Matches(@"^2025-03-29T02:00:00Z\s+2025-03-29T04:00:00Z\s+2025-03-29T03:00:00\+01:00\s+2025-03-29T05:00:00\+01:00\s+-$", lines[2]);
        Assert.Matches(@"^2025-03-30T01:00:00Z\s+2025-03-30T03:00:00Z\s+2025-03-30T03:00:00\+02:00\s+2025-03-30T05:00:00\+02:00\s+monthly-review 2025-03-30T01:00:00Z\.\.2025-03-30T05:00:00Z \(1 shared host\)$", lines[3]);
        Assert.Equal("1 of 2 windows overlap other schedules' windows.", lines[4]);
    }

    [Fact]
    public async Task Preview_asks_for_ten_by_default_and_says_when_there_is_none()
    {
        _coordinator.Service.Preview = new PreviewScheduleResponse { ScheduleId = "nightly-berlin", TimeZone = "Europe/Berlin" };

        var run = await Run("schedules", "preview", "nightly-berlin");

        Assert.Equal(0, run.ExitCode);
        Assert.Equal(10, Assert.Single(_coordinator.Service.Received<PreviewScheduleRequest>()).Count);
        Assert.Equal("Schedule nightly-berlin has no future windows.", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Run_now_prints_the_occurrence_its_steps_and_how_to_read_its_runs()
    {
        var run = await Run("--user", "alice", "schedules", "run-now", "daily-health-checks");

        Assert.True(run.ExitCode == 0, run.ToString());
        var lines = run.StdoutLines;
        Assert.Contains("Occurrence: o-manual1", lines);
        Assert.Contains("Kind:       manual", lines);
        Assert.Contains("State:      open", lines);
        Assert.Contains("Hosts:      a-web1, a-web2", lines);
        Assert.Contains("Created by: alice", lines);
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^0\s+health\.check\s+running\s+-\s+r-step0\s+in_progress$"));
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^1\s+security\.scan\s+pending\s+-\s+-\s+-$"));
        Assert.Equal("  fleetctl runs show r-step0", lines[^1]);
    }

    [Fact]
    public async Task History_lists_occurrences_with_state_and_run_ids_and_sends_the_limit()
    {
        _coordinator.Service.Occurrences["daily-health-checks"] =
        [
            SchedulesFleet.Succeeded("o-2", new DateTimeOffset(2025, 3, 14, 6, 0, 0, TimeSpan.Zero)),
            SchedulesFleet.Succeeded("o-1", new DateTimeOffset(2025, 3, 13, 6, 0, 0, TimeSpan.Zero)),
        ];

        var run = await Run("schedules", "history", "Daily health checks", "--limit", "5");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(5, Assert.Single(_coordinator.Service.Received<ListOccurrencesRequest>()).Limit);
        Assert.Equal(3, run.StdoutLines.Length);
        Assert.Matches(@"^OCCURRENCE\s+SCHEDULED \(UTC\)\s+KIND\s+STATE\s+REASON\s+STEPS\s+RUNS$", run.StdoutLines[0]);
        Assert.Matches(@"^o-2\s+2025-03-14T06:00:00Z\s+scheduled\s+succeeded\s+-\s+1 succeeded, 1 skipped\s+r-health1 \(succeeded\)$", run.StdoutLines[1]);
        Assert.StartsWith("o-1 ", run.StdoutLines[2], StringComparison.Ordinal);
    }

    [Fact]
    public async Task History_json_carries_steps_and_runs()
    {
        _coordinator.Service.Occurrences["daily-health-checks"] = [SchedulesFleet.Succeeded("o-2", TestFleet.Now.AddHours(-9))];

        var run = await Run("schedules", "history", "daily-health-checks", "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        using var document = JsonDocument.Parse(run.Stdout);
        var occurrence = Assert.Single(document.RootElement.GetProperty("occurrences").EnumerateArray());
        Assert.Equal("succeeded", occurrence.GetProperty("state").GetString());
        Assert.Equal("r-health1", occurrence.GetProperty("steps")[0].GetProperty("runId").GetString());
        Assert.Equal(20, Assert.Single(_coordinator.Service.Received<ListOccurrencesRequest>()).Limit);
    }

    [Fact]
    public async Task Windows_lists_the_open_windows_soonest_end_first()
    {
        _coordinator.Service.Windows.Add(new OpenWindow { OccurrenceId = "o-b", ScheduleId = "nightly-berlin", Ends = SchedulesFleet.At(TestFleet.Now.AddMinutes(90)), Hosts = { "a-web1", "a-web2" } });
        _coordinator.Service.Windows.Add(new OpenWindow { OccurrenceId = "o-a", ScheduleId = "daily-health-checks", Ends = SchedulesFleet.At(TestFleet.Now.AddMinutes(10)), Hosts = { "a-web1" } });

        var run = await Run("windows");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(3, run.StdoutLines.Length);
        Assert.Matches(@"^OCCURRENCE\s+SCHEDULE\s+ENDS \(UTC\)\s+REMAINING\s+HOSTS$", run.StdoutLines[0]);
        Assert.Matches(@"^o-a\s+daily-health-checks\s+2025-03-14T15:19:26Z\s+10m\s+a-web1$", run.StdoutLines[1]);
        Assert.Matches(@"^o-b\s+nightly-berlin\s+2025-03-14T16:39:26Z\s+1\.5h\s+a-web1, a-web2$", run.StdoutLines[2]);
    }

    [Fact]
    public async Task Windows_when_none_is_open_says_so_and_json_is_empty()
    {
        var text = await Run("windows");
        var json = await Run("windows", "--json");

        Assert.Equal((0, "", "No open windows."), (text.ExitCode, text.Stdout, Assert.Single(text.StderrLines)));
        Assert.Equal(0, json.ExitCode);
        using var document = JsonDocument.Parse(json.Stdout);
        Assert.Equal(0, document.RootElement.GetProperty("windows").GetArrayLength());
    }
}
