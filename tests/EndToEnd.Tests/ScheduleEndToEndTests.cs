using System.Text.Json;
using System.Text.RegularExpressions;
using Fleet.EndToEnd.Tests.Infrastructure;
using Fleet.Testing;

namespace Fleet.EndToEnd.Tests;

/// <summary>Maintenance windows in embedded mode, driven only through the real fleetctl executable.</summary>
public sealed partial class ScheduleEndToEndTests : IAsyncLifetime
{
    static readonly string[] DefaultWindows = ["daily-health-checks", "monthly-database", "monthly-review", "weekly-performance", "weekly-security-updates"];

    readonly TempDirectory dir = new();
    CoordinatorProcess? coordinator;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (coordinator is not null) await coordinator.DisposeAsync();
        dir.Dispose();
    }

    [Fact]
    public async Task Schedule_CreatedFromYaml_RunNow_SucceedsWithItsRun_AndDefaultWindowsShowUnavailableSteps()
    {
        coordinator = await CoordinatorProcess.StartAsync(new() { ["Fleet:Schedules:Interval"] = "00:00:01" }, dir.Path);
        var statuses = await Eventually.UntilAsync(coordinator.AgentStatusesAsync, s => s.ContainsValue("AGENT_STATUS_ONLINE"), "the local host online", TimeSpan.FromSeconds(30));
        var agentId = Assert.Single(statuses.Keys);
        Task<Fleetctl.Result> Ctl(params string[] args) => Fleetctl.RunAsync(["--coordinator", coordinator.GrpcUrl, .. args]);

        // A window far in the future (1 January), opened by hand: one step, the health check the embedded agent offers.
        var yaml = dir.Combine("e2e-health.yaml");
        await File.WriteAllTextAsync(yaml, $"""
            id: e2e-health
            name: End-to-end health
            cron: "0 0 1 1 *"
            timeZone: Europe/Berlin
            duration: 10m
            hosts: ["{agentId}"]
            steps:
              - name: Health probes
                task: health.check
            """);
        var create = await Ctl("schedules", "create", "-f", yaml);
        Assert.True(create.ExitCode == 0, create.Stdout + create.Stderr);
        Assert.StartsWith("Created schedule e2e-health (End-to-end health): next window ", create.Stdout, StringComparison.Ordinal);
        Assert.Contains("Europe/Berlin", create.Stdout, StringComparison.Ordinal);

        var runNow = await Ctl("schedules", "run-now", "End-to-end health");
        Assert.True(runNow.ExitCode == 0, runNow.Stdout + runNow.Stderr);
        var occurrenceId = OccurrenceLine().Match(runNow.Stdout) is { Success: true } m ? m.Groups[1].Value : throw new Xunit.Sdk.XunitException("no occurrence in:\n" + runNow.Stdout);
        Assert.Matches(@"(?m)^Kind:\s+manual$", runNow.Stdout);

        // The history shows the occurrence succeeded, with the step's run succeeded.
        var historyRow = new Regex($@"(?m)^{Regex.Escape(occurrenceId)}\s+\S+\s+manual\s+succeeded\s+.*\b1 succeeded\s+(r-\S+) \(succeeded\)\s*$");
        var history = await Eventually.UntilAsync(() => Ctl("schedules", "history", "e2e-health"),
            r => r.ExitCode == 0 && historyRow.IsMatch(r.Stdout), "the occurrence succeeded in schedules history", TimeSpan.FromSeconds(60));
        var runId = historyRow.Match(history.Stdout).Groups[1].Value;

        var run = await Ctl("runs", "show", runId);
        Assert.True(run.ExitCode == 0, run.Stdout + run.Stderr);
        Assert.Matches(@"(?m)^Task:\s+health\.check$", run.Stdout);
        Assert.Matches(@"(?m)^Status:\s+succeeded$", run.Stdout);
        Assert.Matches($@"(?m)^\S+\s+succeeded\s+0\s+", run.Stdout); // the host's invocation: succeeded, exit 0

        // The runbook's five windows are there; a step whose task the agent does not offer is disabled (task-unavailable).
        var offered = await OfferedTasksAsync(coordinator.GrpcUrl, agentId);
        Assert.Contains("health.check", offered);
        var list = await Ctl("schedules", "list");
        Assert.True(list.ExitCode == 0, list.Stdout + list.Stderr);
        foreach (var id in DefaultWindows) Assert.Matches($@"(?m)^{id}\s+.*\benabled\b", list.Stdout);
        Assert.Matches(@"(?m)^e2e-health\s+End-to-end health\s+0 0 1 1 \*\s+Europe/Berlin\s+10m\s+\S+Z\s+\S+\+01:00\s+enabled\s+1\s+-$", list.Stdout);
        Assert.Contains("(task-unavailable)", list.Stdout, StringComparison.Ordinal);

        var listJson = await Ctl("schedules", "list", "--json");
        Assert.True(listJson.ExitCode == 0, listJson.Stderr);
        using var document = JsonDocument.Parse(listJson.Stdout);
        var defaults = document.RootElement.GetProperty("schedules").EnumerateArray().Where(s => DefaultWindows.Contains(s.GetProperty("id").GetString())).ToList();
        Assert.Equal(DefaultWindows.Length, defaults.Count);
        var steps = defaults.SelectMany(s => s.GetProperty("steps").EnumerateArray()).ToList();
        Assert.Contains(steps, s => !offered.Contains(s.GetProperty("task").GetString()!));
        foreach (var step in steps)
        {
            var task = step.GetProperty("task").GetString()!;
            var expected = offered.Contains(task) ? "" : "task-unavailable";
            Assert.True(step.GetProperty("disabledReason").GetString() == expected, $"{task}: disabledReason '{step.GetProperty("disabledReason").GetString()}', expected '{expected}'");
            Assert.Equal(expected.Length > 0, step.GetProperty("disabled").GetBoolean());
        }

        // The line the operator reads for a step that cannot run: task (task-unavailable).
        var unavailable = steps.First(s => !offered.Contains(s.GetProperty("task").GetString()!)).GetProperty("task").GetString()!;
        Assert.Contains($"{unavailable} (task-unavailable)", list.Stdout, StringComparison.Ordinal);
    }

    static async Task<HashSet<string>> OfferedTasksAsync(string grpcUrl, string agentId)
    {
        var show = await Fleetctl.RunAsync("--coordinator", grpcUrl, "agents", "show", agentId, "--json");
        Assert.True(show.ExitCode == 0, show.Stderr);
        using var agent = JsonDocument.Parse(show.Stdout);
        return agent.RootElement.GetProperty("tasks").EnumerateArray().Select(t => t.GetProperty("name").GetString()!).ToHashSet(StringComparer.Ordinal);
    }

    [GeneratedRegex(@"(?m)^Occurrence:\s+(\S+)\s*$")]
    private static partial Regex OccurrenceLine();
}
