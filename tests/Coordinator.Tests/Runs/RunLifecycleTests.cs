using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Grpc.Core;
using V1TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Coordinator.Tests.Runs;

/// <summary>Forward-only states, the execution-timeout fallback, per-host cancel, listing.</summary>
public sealed class RunLifecycleTests
{
    [Fact]
    public async Task LateStarted_AfterFinished_IsIgnored()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite).Fast();
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(agent.Id));
        var dispatch = await agent.NextDispatchAsync();
        await agent.SendAsync(FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Succeeded));
        await agent.SendAsync(FakeAgent.Started(dispatch.InvocationId), FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Failed));

        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Equal([InvocationState.Dispatched, InvocationState.Succeeded], done.Invocations[0].Transitions.Select(t => t.State));
        Assert.Equal("all good", done.Invocations[0].Summary);
        Assert.Equal(3, done.Invocations[0].Figures["checked"]);
    }

    [Fact]
    public async Task DispatchedInvocation_WithoutResult_IsTimedOut_AfterExecutionTimeoutAndGrace()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite).Fast().With("Fleet:Runs:ExecutionTimeoutGrace", "00:00:00");
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(agent.Id);
        request.ExecutionTimeout = "1s";
        var run = await client.CreateRunAsync(request);
        var dispatch = await agent.NextDispatchAsync();
        Assert.Equal(TimeSpan.FromSeconds(1), dispatch.ExecutionTimeout.ToTimeSpan());

        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal(InvocationState.TimedOut, done.Invocations[0].State);
    }

    [Fact]
    public async Task AgentResult_AfterTheCoordinatorGaveUp_RecordsTheRealOutcome()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite).Fast().With("Fleet:Runs:ExecutionTimeoutGrace", "00:00:00");
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(agent.Id);
        request.ExecutionTimeout = "1s";
        var run = await client.CreateRunAsync(request);
        var dispatch = await agent.NextDispatchAsync();
        await client.WaitAsync(run.Id, r => r.Invocations[0].State == InvocationState.TimedOut, "coordinator-side timeout");

        await agent.SendAsync(FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Succeeded));
        var after = await client.WaitAsync(run.Id, r => r.Invocations[0].State == InvocationState.Succeeded, "the agent's outcome");
        Assert.Contains("was timed-out", after.Invocations[0].Transitions[^1].Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OnlineHost_QueuedBehindMaxConcurrency_IsNotDeliveryTimedOut()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite).Fast();
        await using var a = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("a"));
        await using var b = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("b"));
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(a.Id, b.Id);
        request.MaxConcurrency = "1";
        request.DeliveryTimeout = "1s";
        var run = await client.CreateRunAsync(request);
        var first = await a.NextDispatchAsync();
        // Hold a's invocation past b's delivery timeout: b is online, so it keeps waiting for its turn.
        await client.WaitAsync(run.Id, r => DateTime.UtcNow - r.CreatedAt.ToDateTime() > TimeSpan.FromSeconds(2), "past the delivery timeout");
        await a.SendAsync(FakeAgent.Finished(first.InvocationId, V1TaskStatus.Succeeded));
        await b.RunNextAsync(V1TaskStatus.Succeeded);
        Assert.Equal(RunStatus.Succeeded, (await client.FinishedAsync(run.Id)).Status);
    }

    [Fact]
    public async Task CancelOneHost_CancelsOnlyThatInvocation_AndTheRunCarriesOn()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite).Fast();
        await using var a = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("a"));
        await using var b = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("b"));
        var client = coordinator.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(a.Id, b.Id));
        var onA = await a.NextDispatchAsync();
        await b.NextDispatchAsync();

        await client.CancelRunAsync(new CancelRunRequest { Id = run.Id, AgentId = b.Id });
        var cancel = (await b.NextAsync(CoordinatorMessage.BodyOneofCase.Cancel)).Cancel;
        Assert.EndsWith("." + b.Id, cancel.InvocationId, StringComparison.Ordinal);
        await b.SendAsync(FakeAgent.Finished(cancel.InvocationId, V1TaskStatus.Cancelled));
        await a.SendAsync(FakeAgent.Finished(onA.InvocationId, V1TaskStatus.Succeeded));

        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Failed, done.Status); // one host did not succeed; the run itself was not cancelled
        Assert.Equal(InvocationState.Succeeded, done.On(a).State);
        Assert.Equal(InvocationState.Cancelled, done.On(b).State);
        Assert.False(a.HasPending(CoordinatorMessage.BodyOneofCase.Cancel));
        var unknown = await Assert.ThrowsAsync<RpcException>(() => client.CancelRunAsync(new CancelRunRequest { Id = "r-nosuchrun" }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
    }

    [Fact]
    public async Task ListRuns_IsNewestFirst_Paged_AndFiltered()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite).Fast();
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
            ids.Add((await client.CreateRunAsync(RunsTestKit.Probe(agent.Id))).Id);
        ids.Add((await client.CreateRunAsync(new CreateRunRequest { Task = "wipe", Hosts = { agent.Id }, Confirm = true })).Id);

        var seen = new List<string>();
        var page = new ListRunsResponse { NextPageToken = "" };
        do
        {
            page = await client.ListRunsAsync(new ListRunsRequest { Task = "probe", PageSize = 2, PageToken = page.NextPageToken });
            Assert.All(page.Runs, r => Assert.Empty(r.Invocations));
            seen.AddRange(page.Runs.Select(r => r.Id));
        }
        while (page.NextPageToken.Length > 0);
        Assert.Equal(ids.Take(5).Reverse(), seen);
        var inProgress = await client.ListRunsAsync(new ListRunsRequest { Status = RunStatus.Succeeded });
        Assert.Empty(inProgress.Runs);
        var bad = await Assert.ThrowsAsync<RpcException>(() => client.ListRunsAsync(new ListRunsRequest { PageSize = 501 }).ResponseAsync);
        Assert.StartsWith("page_size:", bad.Status.Detail, StringComparison.Ordinal);
    }
}
