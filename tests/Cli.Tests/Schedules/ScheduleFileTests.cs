using System.Text.Json;
using Fleet.Protocol.V1;
using Fleet.Testing;

namespace Fleet.Cli.Tests.Schedules;

/// <summary>
/// fleetctl schedules create|update -f: the YAML reaches the API field for field; a bad file is an error naming the
/// file, the line and the field (exit 1, nothing sent), and so is the coordinator's refusal of a field.
/// </summary>
public sealed class ScheduleFileTests : IAsyncLifetime
{
    private const string Weekly = """
        # The runbook's Sunday window.
        id: weekly-security-updates
        name: Weekly security updates
        description: Security scans and updates.
        cron: "0 2 * * SUN"
        timeZone: Europe/Berlin
        duration: 2h
        cutoff: 15m
        onClose: finish
        hosts: ["*"]
        tags: [env=prod]
        misfire: run-once
        overlap: wait
        enabled: false
        steps:
          - name: Run security scans
            task: security.scan
            onFailure: continue
          - task: packages.security-updates
            maxConcurrency: "25%"
            maxErrors: "0"
            executionTimeout: 30m
            parameters:
              reboot: "false"
              exclude: linux-image-*
        """;

    private FakeSchedulesCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();
    private readonly TempDirectory _dir = new();

    public async Task InitializeAsync() => _coordinator = await FakeSchedulesCoordinator.StartAsync();

    public async Task DisposeAsync()
    {
        await _coordinator.DisposeAsync();
        _dir.Dispose();
    }

    private string Write(string yaml, string name = "schedule.yaml")
    {
        var path = _dir.Combine(name);
        File.WriteAllText(path, yaml);
        return path;
    }

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    /// <summary>Runs a create that must fail on the file itself: exit 1, the one error line, nothing sent.</summary>
    private async Task<string> Refused(string yaml)
    {
        var path = Write(yaml);
        var run = await Run("schedules", "create", "-f", path);
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Equal("", run.Stdout);
        Assert.Empty(_coordinator.Service.Calls);
        return Assert.Single(run.StderrLines).Replace(path, "schedule.yaml", StringComparison.Ordinal);
    }

    [Fact]
    public async Task Create_sends_every_field_of_the_yaml_and_reports_the_next_window_and_disabled_steps()
    {
        var run = await Run("schedules", "create", "-f", Write(Weekly));

        Assert.True(run.ExitCode == 0, run.ToString());
        var sent = Assert.Single(_coordinator.Service.Received<Schedule>());
        Assert.Equal(("weekly-security-updates", "Weekly security updates", "Security scans and updates."), (sent.Id, sent.Name, sent.Description));
        Assert.Equal(("0 2 * * SUN", "Europe/Berlin", "2h", "15m", "finish"), (sent.Cron, sent.TimeZone, sent.Duration, sent.Cutoff, sent.OnClose));
        Assert.Equal(["*"], sent.Hosts);
        Assert.Equal(["env=prod"], sent.Tags);
        Assert.Equal(("run-once", "wait"), (sent.Misfire, sent.Overlap));
        Assert.True(sent.HasEnabled);
        Assert.False(sent.Enabled);
        Assert.Equal(2, sent.Steps.Count);
        Assert.Equal(("Run security scans", "security.scan", "continue"), (sent.Steps[0].Name, sent.Steps[0].Task, sent.Steps[0].OnFailure));
        var update = sent.Steps[1];
        Assert.Equal(("packages.security-updates", "25%", "0", "30m"), (update.Task, update.MaxConcurrency, update.MaxErrors, update.ExecutionTimeout));
        Assert.Equal(new Dictionary<string, string> { ["reboot"] = "false", ["exclude"] = "linux-image-*" }, update.Parameters);

        Assert.Equal(
        [
            "Created schedule weekly-security-updates (Weekly security updates): no next window (disabled).",
            "  step 0 security.scan is disabled now (task-unavailable): it is skipped unless a targeted agent offers it when the step starts.",
        ], run.StdoutLines);
    }

    [Fact]
    public async Task A_json_file_from_show_json_is_accepted_and_its_output_fields_are_not_sent()
    {
        var shown = Google.Protobuf.JsonFormatter.Default.Format(SchedulesFleet.Daily());

        var run = await Run("schedules", "create", "-f", Write(shown, "daily.json"), "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        var sent = Assert.Single(_coordinator.Service.Received<Schedule>());
        Assert.Null(sent.NextFire);
        Assert.Equal("", sent.Source);
        Assert.False(sent.Steps[1].Disabled);
        Assert.Equal("security.scan", sent.Steps[1].Task);
        using var document = JsonDocument.Parse(run.Stdout);
        Assert.Equal("daily-health-checks", document.RootElement.GetProperty("id").GetString());
    }

    [Fact]
    public async Task An_unknown_field_names_the_file_line_and_field()
    {
        var error = await Refused("name: n\ncron: \"0 6 * * *\"\ndurration: 15m\n");

        Assert.StartsWith("fleetctl: schedule.yaml:3: unknown field 'durration' (expected one of: id, name, description, cron, timeZone, duration,", error);
    }

    [Fact]
    public async Task An_unknown_step_field_names_the_step()
    {
        var error = await Refused("name: n\nsteps:\n  - task: health.check\n  - task: logs.scan\n    parameterz: { path: /var/log/syslog }\n");

        Assert.StartsWith("fleetctl: schedule.yaml:5: steps[1]: unknown field 'parameterz' (expected one of: task, parameters, onFailure,", error);
    }

    [Theory]
    [InlineData("name: n\nhosts: web-01\n", "fleetctl: schedule.yaml:2: hosts: expected a list, e.g. [\"*\"] or [web-01, web-02]")]
    [InlineData("name: n\nsteps:\n  task: health.check\n", "fleetctl: schedule.yaml:3: steps: expected a list of steps (each \"- task: ...\")")]
    [InlineData("name: n\nsteps:\n  - health.check\n", "fleetctl: schedule.yaml:3: steps[0]: expected a mapping (task: ..., parameters: ...)")]
    [InlineData("name: n\ncron: [0, 6]\n", "fleetctl: schedule.yaml:2: cron: expected a single value")]
    [InlineData("name: n\nenabled: maybe\n", "fleetctl: schedule.yaml:2: enabled: expected true or false, not 'maybe'")]
    [InlineData("name: n\nsteps:\n  - task: logs.scan\n    parameters: [a, b]\n", "fleetctl: schedule.yaml:4: steps[0].parameters: expected a mapping of names to values, e.g. { path: /var/log/auth.log }")]
    [InlineData("name: n\nsteps:\n  - task: logs.scan\n    parameters:\n      paths: [a, b]\n", "fleetctl: schedule.yaml:5: steps[0].parameters.paths: expected a single value (quote it if needed)")]
    [InlineData("name: n\ntimeZone: UTC\ntime_zone: UTC\n", "fleetctl: schedule.yaml:3: timeZone: given more than once")]
    public async Task A_value_of_the_wrong_shape_names_the_file_line_and_field(string yaml, string expected)
    {
        Assert.Equal(expected, await Refused(yaml));
    }

    [Fact]
    public async Task Broken_yaml_names_the_file_and_line()
    {
        var error = await Refused("name: n\ncron: \"0 6 * * *\nduration: 15m\n");

        Assert.Matches(@"^fleetctl: schedule\.yaml:\d: .+", error);
        Assert.DoesNotContain("Idx:", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("- name: a\n- name: b\n")]
    public async Task A_file_without_one_mapping_is_refused(string yaml)
    {
        Assert.Equal("fleetctl: schedule.yaml: expected one YAML document holding a mapping (name, cron, duration, hosts, steps...)", await Refused(yaml));
    }

    [Fact]
    public async Task The_coordinators_refusal_of_a_step_field_points_at_its_line()
    {
        var path = Write("name: Nightly\ncron: \"0 6 * * *\"\nduration: 15m\nhosts: [\"*\"]\nsteps:\n  - task: health.check\n  - name: bad\n    task: \"rm -rf\"\n");

        var run = await Run("schedules", "create", "-f", path);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"fleetctl: invalid argument: {path}:8: steps[1].task: 'rm -rf' is not a valid task name", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task The_coordinators_refusal_of_the_cron_points_at_its_line()
    {
        var path = Write("name: Nightly\n\ncron: \"0 25 * * *\"\nduration: 15m\nhosts: [\"*\"]\nsteps: [{ task: health.check }]\n");

        var run = await Run("schedules", "create", "-f", path);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"fleetctl: invalid argument: {path}:3: cron: '0 25 * * *' is not a valid cron expression: Hours: Value is out of range", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task A_missing_field_is_named_with_the_file()
    {
        var path = Write("name: Nightly\ncron: \"0 6 * * *\"\nduration: 15m\nsteps: [{ task: health.check }]\n");

        var run = await Run("schedules", "create", "-f", path);

        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith($"fleetctl: invalid argument: {path}: hosts: name the targets", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Creating_an_existing_id_points_at_the_id_line()
    {
        _coordinator.Service.Stored["weekly-security-updates"] = SchedulesFleet.Daily();

        var path = Write(Weekly);
        var run = await Run("schedules", "create", "-f", path);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"fleetctl: already exists: {path}:2: id: schedule 'weekly-security-updates' already exists", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Update_by_name_replaces_the_definition_under_the_resolved_id()
    {
        _coordinator.Service.Stored["daily-health-checks"] = SchedulesFleet.Daily();
        var path = Write("name: Daily health checks\ncron: \"30 6 * * *\"\nduration: 20m\nhosts: [\"*\"]\nsteps:\n  - task: health.check\n");

        var run = await Run("schedules", "update", "Daily health checks", "-f", path);

        Assert.True(run.ExitCode == 0, run.ToString());
        var request = Assert.Single(_coordinator.Service.Received<UpdateScheduleRequest>());
        Assert.Equal(("daily-health-checks", "30 6 * * *", "20m"), (request.Id, request.Schedule.Cron, request.Schedule.Duration));
        Assert.StartsWith("Updated schedule daily-health-checks (Daily health checks): next window ", Assert.Single(run.StdoutLines));
    }

    [Fact]
    public async Task Update_with_another_id_in_the_file_points_at_the_id_line()
    {
        _coordinator.Service.Stored["daily-health-checks"] = SchedulesFleet.Daily();
        var path = Write(Weekly);

        var run = await Run("schedules", "update", "daily-health-checks", "-f", path);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"fleetctl: invalid argument: {path}:2: id: 'weekly-security-updates' differs from the schedule's id 'daily-health-checks' (ids cannot change)",
            Assert.Single(run.StderrLines));
    }
}
