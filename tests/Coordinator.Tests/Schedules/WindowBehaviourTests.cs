using Fleet.Coordinator.Schedules;
using Fleet.Coordinator.Tests.Runs;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using V1TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Coordinator.Tests.Schedules;

/// <summary>Inside a window: steps in order, cutoff, onClose, overlap policies, offline hosts, validation and preview.</summary>
public sealed class WindowBehaviourTests
{
    static readonly DateTimeOffset Start = new(2026, 2, 1, 0, 0, 0, TimeSpan.Zero);

    static async Task<Run> RunAsync(ScheduleHarness harness, string runId) =>
        await new Runs(harness).Client.GetRunAsync(new GetRunRequest { Id = runId });

    /// <summary>The next Dispatch of this run (the engine re-sends older dispatches not started when the fake clock jumps).</summary>
    static async Task<Dispatch> DispatchOfAsync(FakeAgent agent, string runId)
    {
        while (true)
        {
            var dispatch = await agent.NextDispatchAsync();
            if (dispatch.RunId == runId) return dispatch;
        }
    }

    sealed class Runs(ScheduleHarness harness)
    {
        public Fleet.Protocol.V1.Runs.RunsClient Client { get; } = new(harness.First.Channel("alice"));
    }

    [Fact]
    public async Task Steps_RunInOrder_CutoffStopsNewSteps_OnCloseCancelCancelsTheRunning()
    {
        await using var harness = await ScheduleHarness.StartAsync(Start);
        var coordinator = harness.Coordinator();
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = ScheduleHarness.Client(coordinator);
        await client.CreateScheduleAsync(ScheduleHarness.Probe("cutoff", "0 1 * * *", "30m", steps: 3, cutoff: "10m", onClose: "cancel"));
        await client.CreateScheduleAsync(ScheduleHarness.Probe("closing", "0 2 * * *", "30m", steps: 2, onClose: "cancel"));

        // cutoff: step 1 runs at 01:00; it finishes at 01:25, inside the last 10 minutes: steps 2 and 3 never start.
        await harness.TickAtAsync(Start.AddHours(1));
        var first = await agent.NextDispatchAsync();
        Assert.Equal(ScheduleIds.StepRun("cutoff", Start.AddHours(1).UtcDateTime, 0) + "." + agent.Id, first.InvocationId);
        await harness.TickAtAsync(Start.AddHours(1).AddMinutes(5));
        Assert.False(agent.HasPending(CoordinatorMessage.BodyOneofCase.Dispatch)); // step 2 waits for step 1's run
        harness.Time.SetUtcNow(Start.AddHours(1).AddMinutes(25));
        await agent.SendAsync(FakeAgent.Started(first.InvocationId), FakeAgent.Finished(first.InvocationId, V1TaskStatus.Succeeded));
        await Eventually.UntilAsync(async () => (await RunAsync(harness, first.RunId)).Status == RunStatus.Succeeded, "step 1's run finished");
        await harness.TickAsync();
        var occurrence = (await client.ListOccurrencesAsync(new ListOccurrencesRequest { Id = "cutoff" })).Occurrences.Single();
        Assert.Equal("succeeded", occurrence.State);
        Assert.Equal(["succeeded", "skipped", "skipped"], occurrence.Steps.Select(s => s.State));
        Assert.StartsWith("cutoff", occurrence.Steps[1].Reason);

        // onClose cancel: step 1 still running at 02:30: the agent is told to cancel, step 2 is skipped (window closed).
        await harness.TickAtAsync(Start.AddHours(2));
        var running = await DispatchOfAsync(agent, ScheduleIds.StepRun("closing", Start.AddHours(2).UtcDateTime, 0));
        await agent.SendAsync(FakeAgent.Started(running.InvocationId));
        await harness.TickAtAsync(Start.AddHours(2).AddMinutes(30));
        var cancel = (await agent.NextAsync(CoordinatorMessage.BodyOneofCase.Cancel)).Cancel;
        Assert.Equal(running.InvocationId, cancel.InvocationId);
        await agent.SendAsync(FakeAgent.Finished(running.InvocationId, V1TaskStatus.Cancelled));
        await Eventually.UntilAsync(async () => (await RunAsync(harness, running.RunId)).Status == RunStatus.Cancelled, "the running step cancelled");
        var closed = (await client.ListOccurrencesAsync(new ListOccurrencesRequest { Id = "closing" })).Occurrences.Single();
        Assert.Equal("failed", closed.State);
        Assert.Equal("window ended", closed.Reason);
        Assert.Equal(["interrupted", "skipped"], closed.Steps.Select(s => s.State));
        Assert.Equal("window closed", closed.Steps[1].Reason);
        Assert.Equal(2, await harness.AuditCountAsync("window.closed"));
    }

    [Fact]
    public async Task OnCloseFinish_LetsTheRunningFinish_OfflineHostGetsItsInvocationOnReconnect_SkippedAfterTheWindow()
    {
        await using var harness = await ScheduleHarness.StartAsync(Start);
        var coordinator = harness.Coordinator();
        var online = await FakeAgent.ConnectAsync(coordinator, "a-online");
        var late = await FakeAgent.ConnectAsync(coordinator, "b-late");
        var absent = await FakeAgent.ConnectAsync(coordinator, "c-absent");
        await late.DisposeAsync();
        await absent.DisposeAsync();
        var client = ScheduleHarness.Client(coordinator);
        await client.CreateScheduleAsync(ScheduleHarness.Probe("finish", "0 3 * * *", "1h", onClose: "finish"));

        await harness.TickAtAsync(Start.AddHours(3));
        var runId = ScheduleIds.StepRun("finish", Start.AddHours(3).UtcDateTime, 0);
        var dispatch = await online.NextDispatchAsync();
        await online.SendAsync(FakeAgent.Started(dispatch.InvocationId));
        await Eventually.UntilAsync(async () => (await RunAsync(harness, runId)).Invocations.Count(i => i.State == InvocationState.Delayed) == 2, "offline hosts delayed");

        // b-late reconnects at 03:40, inside the window: it gets its invocation.
        harness.Time.SetUtcNow(Start.AddHours(3).AddMinutes(40));
        await using var back = await FakeAgent.ConnectAsync(coordinator, "b-late");
        var redelivered = await back.NextDispatchAsync();
        Assert.Equal($"{runId}.b-late", redelivered.InvocationId);
        await back.SendAsync(FakeAgent.Started(redelivered.InvocationId), FakeAgent.Finished(redelivered.InvocationId, V1TaskStatus.Succeeded));

        // 04:00: the window ends. c-absent never came: Skipped (window closed); a-online keeps running (onClose: finish).
        await harness.TickAtAsync(Start.AddHours(4));
        var run = await RunAsync(harness, runId);
        var skipped = run.Invocations.Single(i => i.AgentId == "c-absent");
        Assert.Equal(InvocationState.Skipped, skipped.State);
        Assert.Contains(skipped.Transitions, t => t.Detail == "window closed");
        Assert.Equal(InvocationState.Running, run.Invocations.Single(i => i.AgentId == "a-online").State);
        Assert.False(online.HasPending(CoordinatorMessage.BodyOneofCase.Cancel));
        await online.SendAsync(FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Succeeded));
        await Eventually.UntilAsync(async () => (await RunAsync(harness, runId)).Status != RunStatus.InProgress, "run finished after the window");
        run = await RunAsync(harness, runId);
        Assert.Equal(InvocationState.Succeeded, run.Invocations.Single(i => i.AgentId == "a-online").State);
        Assert.Equal(InvocationState.Succeeded, run.Invocations.Single(i => i.AgentId == "b-late").State);

        // c-absent reconnecting after the window gets nothing.
        await using var after = await FakeAgent.ConnectAsync(coordinator, "c-absent");
        await harness.TickAsync();
        Assert.Equal(InvocationState.Skipped, (await RunAsync(harness, runId)).Invocations.Single(i => i.AgentId == "c-absent").State);
        Assert.False(after.HasPending(CoordinatorMessage.BodyOneofCase.Dispatch));
        await online.DisposeAsync();
    }

    [Fact]
    public async Task OverlapPolicies_Alongside_Wait_Skip()
    {
        await using var harness = await ScheduleHarness.StartAsync(Start);
        var coordinator = harness.Coordinator();
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = ScheduleHarness.Client(coordinator);
        await client.CreateScheduleAsync(ScheduleHarness.Probe("long", "0 1 * * *", "4h"));
        await client.CreateScheduleAsync(ScheduleHarness.Probe("beside", "0 2 * * *", "1h", overlap: "alongside"));
        await client.CreateScheduleAsync(ScheduleHarness.Probe("patient", "0 2 * * *", "1h", overlap: "wait"));
        await client.CreateScheduleAsync(ScheduleHarness.Probe("polite", "0 2 * * *", "1h", overlap: "skip"));

        await harness.TickAtAsync(Start.AddHours(1));
        var longStep = await agent.NextDispatchAsync();
        await harness.TickAtAsync(Start.AddHours(2));
        async Task<Occurrence> Latest(string id) => (await client.ListOccurrencesAsync(new ListOccurrencesRequest { Id = id })).Occurrences[0];
        Assert.Equal("open", (await Latest("beside")).State);
        Assert.Equal("waiting", (await Latest("patient")).State);
        Assert.StartsWith("overlap: waiting for open window(s) beside, long", (await Latest("patient")).Reason);
        var polite = await Latest("polite");
        Assert.Equal("skipped", polite.State);
        Assert.Contains("every host is in open window(s)", polite.Reason);
        var beside = await DispatchOfAsync(agent, ScheduleIds.StepRun("beside", Start.AddHours(2).UtcDateTime, 0));

        // The long window's step and "beside" finish: "patient" opens (still inside its own window).
        harness.Time.SetUtcNow(Start.AddHours(2).AddMinutes(10));
        await agent.SendAsync(FakeAgent.Started(longStep.InvocationId), FakeAgent.Finished(longStep.InvocationId, V1TaskStatus.Succeeded),
            FakeAgent.Started(beside.InvocationId), FakeAgent.Finished(beside.InvocationId, V1TaskStatus.Succeeded));
        await Eventually.UntilAsync(async () => (await RunAsync(harness, beside.RunId)).Status == RunStatus.Succeeded && (await RunAsync(harness, longStep.RunId)).Status == RunStatus.Succeeded, "both runs finished");
        await harness.TickAsync(); // closes long and beside
        await harness.TickAsync(); // opens patient
        Assert.Equal("open", (await Latest("patient")).State);
        Assert.Equal($"{ScheduleIds.StepRun("patient", Start.AddHours(2).UtcDateTime, 0)}.{agent.Id}", (await DispatchOfAsync(agent, ScheduleIds.StepRun("patient", Start.AddHours(2).UtcDateTime, 0))).InvocationId);
        Assert.Equal(1, await harness.AuditCountAsync("window.opened", "patient"));
        var windows = (await client.ListOpenWindowsAsync(new ListOpenWindowsRequest())).Windows;
        Assert.Equal(agent.Id, Assert.Single(windows).Hosts.Single());
    }

    [Fact]
    public async Task Validation_NamesTheField_Preview_ShowsZoneAndOverlaps_UnavailableStepIsSkipped()
    {
        await using var harness = await ScheduleHarness.StartAsync(Start);
        var coordinator = harness.Coordinator();
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = ScheduleHarness.Client(coordinator);
        async Task<string> Invalid(Action<Schedule> change)
        {
            var schedule = ScheduleHarness.Probe("bad", "0 1 * * *", "1h");
            change(schedule);
            var ex = await Assert.ThrowsAsync<RpcException>(async () => await client.CreateScheduleAsync(schedule));
            Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
            return ex.Status.Detail;
        }
        Assert.StartsWith("cron: '0 25 * * *' is not a valid cron expression:", await Invalid(s => s.Cron = "0 25 * * *"));
        Assert.StartsWith("timeZone: 'Mars/Olympus'", await Invalid(s => s.TimeZone = "Mars/Olympus"));
        Assert.StartsWith("duration: 'soon'", await Invalid(s => s.Duration = "soon"));
        Assert.StartsWith("cutoff: '2h'", await Invalid(s => s.Cutoff = "2h"));
        Assert.StartsWith("steps[0].task: a task name is required", await Invalid(s => s.Steps[0].Task = ""));
        Assert.StartsWith("steps[0].onFailure", await Invalid(s => s.Steps[0].OnFailure = "explode"));
        Assert.StartsWith("overlap", await Invalid(s => s.Overlap = "sometimes"));

        // The runbook's first Sunday: 01:00-05:00 overlaps 02:00, 03:00 and 04:00 windows.
        var monthly = ScheduleHarness.Probe("monthly", "0 1 * * SUN#1", "4h", zone: "Europe/Berlin");
        monthly.Steps.Add(new ScheduleStep { Task = "backup.full", OnFailure = "continue" });
        await client.CreateScheduleAsync(monthly);
        await client.CreateScheduleAsync(ScheduleHarness.Probe("weekly", "0 2 * * SUN", "2h", zone: "Europe/Berlin"));
        var preview = await client.PreviewScheduleAsync(new PreviewScheduleRequest { Id = "monthly", Count = 3 });
        Assert.Equal(3, preview.Fires.Count);
        Assert.Equal(new DateTime(2026, 3, 1, 0, 0, 0, DateTimeKind.Utc), preview.Fires[0].Start.ToDateTime()); // 01:00 CET
        Assert.Equal("2026-03-01T01:00:00+01:00", preview.Fires[0].LocalStart);
        Assert.Equal(new DateTime(2026, 4, 4, 23, 0, 0, DateTimeKind.Utc), preview.Fires[1].Start.ToDateTime());
        Assert.Equal("2026-04-05T01:00:00+02:00", preview.Fires[1].LocalStart); // CEST after the spring change
        var overlap = Assert.Single(preview.Fires[0].Overlaps);
        Assert.Equal("weekly", overlap.ScheduleId);
        Assert.Equal(1, overlap.SharedHosts);

        var shown = await client.GetScheduleAsync(new ScheduleRequest { Id = "monthly" });
        Assert.False(shown.Steps[0].Disabled);
        Assert.True(shown.Steps[1].Disabled);
        Assert.Equal("task-unavailable", shown.Steps[1].DisabledReason);

        // Run now: a manual occurrence; the unavailable step is recorded as skipped, not failing the window.
        var now = await client.RunScheduleNowAsync(new ScheduleRequest { Id = "monthly" });
        Assert.Equal("manual", now.Kind);
        var dispatch = await agent.NextDispatchAsync();
        await agent.SendAsync(FakeAgent.Started(dispatch.InvocationId), FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Succeeded));
        await Eventually.UntilAsync(async () => (await RunAsync(harness, dispatch.RunId)).Status == RunStatus.Succeeded, "manual step finished");
        await harness.TickAsync();
        var history = (await client.ListOccurrencesAsync(new ListOccurrencesRequest { Id = "monthly" })).Occurrences.Single();
        Assert.Equal("succeeded", history.State);
        Assert.Equal("skipped", history.Steps[1].State);
        Assert.Equal("task-unavailable", history.Steps[1].Reason);
        Assert.Equal("succeeded", history.Steps[0].RunStatus);
        Assert.Equal(1, await harness.AuditCountAsync("occurrence.run-now", "monthly"));
    }
}
