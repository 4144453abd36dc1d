using System.Net;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using V1TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Coordinator.Tests.Runs;

/// <summary>Defects found in review: absurd timeouts, lost cancels and dispatches, retry of a live run, malformed updates, response size.</summary>
public sealed class RunHardeningTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    public static TheoryData<Store> Stores => RunsTestKit.Stores;

    CoordinatorFactory Coordinator(Store store) => postgres.Coordinator(store);

    [Theory]
    [InlineData("delivery_timeout", "1000000d", "delivery_timeout: '1000000d' is more than the maximum of 30d")]
    [InlineData("delivery_timeout", "999999d999999d999999d999999d999999d999999d999999d999999d999999d999999d999999d999999d", "delivery_timeout:")]
    [InlineData("execution_timeout", "8d", "execution_timeout: '8d' is more than the maximum of 7d")]
    public async Task CreateRun_WithAHugeTimeout_Answers400NamingTheFieldAndTheCap(string field, string value, string expected)
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        using var http = coordinator.CreateClient();
        var json = $$"""{"task":"probe","hosts":["{{agent.Id}}"],"parameters":{"target":"a.org"},"{{field}}":"{{value}}"}""";
        using var content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        using var response = await http.PostAsync(new Uri("/api/v1/runs", UriKind.Relative), content);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(expected, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        var request = RunsTestKit.Probe(agent.Id);
        if (field == "delivery_timeout") request.DeliveryTimeout = value; else request.ExecutionTimeout = value;
        var error = await Assert.ThrowsAsync<RpcException>(() => coordinator.Runs().CreateRunAsync(request).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.StartsWith(field + ":", error.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void ExecutionTimeout_AboveTheTasksMaxTimeout_IsRejected_AndAnAbsurdCatalogDefaultIsClamped()
    {
        var limited = new TaskDescriptor { Name = "probe", MaxTimeout = Duration.FromTimeSpan(TimeSpan.FromMinutes(5)), DefaultTimeout = new Duration { Seconds = 315_576_000_000 } };
        Assert.Throws<RpcException>(() => RunSpec.ExecutionTimeout("10m", limited));
        Assert.Equal(TimeSpan.FromMinutes(5), RunSpec.ExecutionTimeout("", limited));
        var unlimited = new TaskDescriptor { Name = "probe", DefaultTimeout = new Duration { Seconds = 315_576_000_000 } };
        Assert.Equal(RunSpec.MaxExecutionTimeout, RunSpec.ExecutionTimeout("", unlimited));
    }

    [Fact]
    public async Task RunsWithAbsurdStoredTimeoutsOrBrokenRows_DoNotStopTheEngine()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var now = DateTime.UtcNow;
        await using (var db = coordinator.Db())
        {
            // Rows written before the caps (or by hand): a timeout no DateTime arithmetic survives, and parameters that do not parse.
            foreach (var (id, parameters, ms, state) in new[] { ("r-0absurdtimeout0000", "{}", long.MaxValue, InvocationState.Dispatched), ("r-0brokenparams00000", "not json", 60_000L, InvocationState.Pending) })
            {
                db.Runs.Add(new RunRecord { Id = id, Task = "probe", CreatedBy = "test", CreatedAt = now, ParametersJson = parameters, DeliveryTimeoutMs = ms, ExecutionTimeoutMs = ms, ExecutionTimeout = "1000000d" });
                db.Invocations.Add(new InvocationRecord { Id = $"{id}.{agent.Id}", RunId = id, AgentId = agent.Id, Hostname = agent.Id, CreatedAt = now, UpdatedAt = now, State = state, DispatchedAt = state == InvocationState.Dispatched ? now.AddDays(-1) : null });
                db.Invocations.Add(new InvocationRecord { Id = $"{id}.ghost", RunId = id, AgentId = "ghost", Hostname = "ghost", CreatedAt = now.AddDays(-1), UpdatedAt = now, Ordinal = 1 });
            }
            await db.SaveChangesAsync();
        }
        var client = coordinator.Runs();
        var good = await client.CreateRunAsync(RunsTestKit.Probe(agent.Id));
        var dispatch = await agent.NextDispatchAsync();
        while (dispatch.RunId != good.Id) dispatch = await agent.NextDispatchAsync();
        await agent.SendAsync(FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Succeeded));

        Assert.Equal(RunStatus.Succeeded, (await client.FinishedAsync(good.Id)).Status);
        var engine = coordinator.Services.GetRequiredService<RunEngine>();
        Assert.False(engine.ExecuteTask!.IsCompleted);
        var absurd = await client.GetRunAsync(new GetRunRequest { Id = "r-0absurdtimeout0000" });
        Assert.Equal(RunStatus.InProgress, absurd.Status);
    }

    [Fact]
    public async Task CancelWhileTheAgentIsOffline_ReachesItOnReconnect_InsteadOfTheDispatch()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var id = FakeAgent.NewId();
        var client = coordinator.Runs();
        var (runId, invocationId) = await DispatchThenDropAsync(coordinator, id, started: false);
        await client.CancelRunAsync(new CancelRunRequest { Id = runId, Reason = "destructive, stop" });

        await using var again = await FakeAgent.ConnectAsync(coordinator, id);
        var first = await again.NextAsync(CoordinatorMessage.BodyOneofCase.Cancel);
        Assert.Equal(invocationId, first.Cancel.InvocationId);
        var done = await client.FinishedAsync(runId);
        Assert.Equal(RunStatus.Cancelled, done.Status);
        Assert.Equal(InvocationState.Cancelled, done.Invocations[0].State);
        Assert.False(again.HasPending(CoordinatorMessage.BodyOneofCase.Dispatch));
    }

    [Fact]
    public async Task CancelOfARunningInvocation_IsSentAgainAfterReconnect_AfterTheRedeliveredDispatch()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var id = FakeAgent.NewId();
        var client = coordinator.Runs();
        var (runId, invocationId) = await DispatchThenDropAsync(coordinator, id, started: true);
        await client.CancelRunAsync(new CancelRunRequest { Id = runId });

        await using var again = await FakeAgent.ConnectAsync(coordinator, id);
        Assert.Equal(invocationId, (await again.NextDispatchAsync()).InvocationId);
        Assert.Equal(invocationId, (await again.NextAsync(CoordinatorMessage.BodyOneofCase.Cancel)).Cancel.InvocationId);
        await again.SendAsync(FakeAgent.Finished(invocationId, V1TaskStatus.Cancelled));
        Assert.Equal(RunStatus.Cancelled, (await client.FinishedAsync(runId)).Status);
    }

    [Fact]
    public async Task CancelOfAnInFlightInvocation_IsResent_WhileTheAgentIsOnline()
    {
        using var coordinator = Coordinator(Store.Sqlite).With("Fleet:Runs:CancelResendInterval", "00:00:00.200");
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(agent.Id));
        var dispatch = await agent.NextDispatchAsync();
        await client.CancelRunAsync(new CancelRunRequest { Id = run.Id });
        Assert.Equal(dispatch.InvocationId, (await agent.NextAsync(CoordinatorMessage.BodyOneofCase.Cancel)).Cancel.InvocationId);
        // The first cancel is "lost" (ignored): another one follows.
        Assert.Equal(dispatch.InvocationId, (await agent.NextAsync(CoordinatorMessage.BodyOneofCase.Cancel)).Cancel.InvocationId);
        await agent.SendAsync(FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Cancelled));
        Assert.Equal(RunStatus.Cancelled, (await client.FinishedAsync(run.Id)).Status);
    }

    [Fact]
    public async Task RetryRun_OfARunStillInProgress_IsFailedPrecondition_AndFailedOnlyTakesOnlyUnsuccessfulFinals()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var a = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("a"));
        await using var b = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("b"));
        var client = coordinator.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(a.Id, b.Id));
        var onA = await a.NextDispatchAsync();
        var onB = await b.NextDispatchAsync();
        await b.SendAsync(FakeAgent.Finished(onB.InvocationId, V1TaskStatus.Failed));

        var refused = await Assert.ThrowsAsync<RpcException>(() => client.RetryRunAsync(new RetryRunRequest { Id = run.Id, FailedOnly = true }).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains(run.Id, refused.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("in-progress", refused.Status.Detail, StringComparison.Ordinal);
        Assert.False(a.HasPending(CoordinatorMessage.BodyOneofCase.Dispatch));

        await a.SendAsync(FakeAgent.Finished(onA.InvocationId, V1TaskStatus.Succeeded));
        await client.FinishedAsync(run.Id);
        var retry = await client.RetryRunAsync(new RetryRunRequest { Id = run.Id, FailedOnly = true });
        Assert.Equal(b.Id, Assert.Single(retry.Invocations).AgentId);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task MalformedUpdates_InABatch_DoNotLoseTheRealResult(Store store)
    {
        using var coordinator = Coordinator(store);
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(agent.Id));
        var dispatch = await agent.NextDispatchAsync();
        var finished = FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Succeeded);
        finished.Finished.Figures["bad"] = double.NaN;
        finished.Finished.Figures["worse"] = double.PositiveInfinity;
        await agent.SendAsync(
            FakeAgent.Started(dispatch.InvocationId),
            new TaskUpdate { InvocationId = dispatch.InvocationId }, // no body
            FakeAgent.Output(dispatch.InvocationId, long.MaxValue, [1, 2, 3]) is var o ? Overflowing(o) : null,
            finished);

        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Succeeded, done.Status);
        var invocation = done.Invocations[0];
        Assert.Equal(InvocationState.Succeeded, invocation.State);
        Assert.Equal(3, invocation.Figures["checked"]);
        Assert.False(invocation.Figures.ContainsKey("bad"));
        Assert.Contains("non-finite figures dropped: bad, worse", invocation.Transitions[^1].Detail, StringComparison.Ordinal);
    }

    static TaskUpdate Overflowing(TaskUpdate output)
    {
        output.Output.Offset = ulong.MaxValue;
        return output;
    }

    [Fact]
    public async Task LostDispatch_IsSentAgain_WhileTheAgentStaysConnected()
    {
        using var coordinator = Coordinator(Store.Sqlite).With("Fleet:Runs:DispatchResendAfter", "00:00:00.300");
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(agent.Id));
        var ignored = await agent.NextDispatchAsync(); // "lost": never started
        var again = await agent.NextDispatchAsync();
        Assert.Equal(ignored.InvocationId, again.InvocationId);
        await agent.SendAsync(FakeAgent.Started(again.InvocationId), FakeAgent.Finished(again.InvocationId, V1TaskStatus.Succeeded));
        Assert.Equal(RunStatus.Succeeded, (await client.FinishedAsync(run.Id)).Status);
        await using var db = coordinator.Db();
        Assert.True((await db.Invocations.SingleAsync(i => i.Id == again.InvocationId)).DispatchAttempts >= 2);
    }

    [Fact]
    public async Task InvocationPastItsExecutionTimeout_IsNotRedeliveredOnReconnect_ButTimedOut()
    {
        using var coordinator = Coordinator(Store.Sqlite).With("Fleet:Runs:ExecutionTimeoutGrace", "00:00:00");
        var id = FakeAgent.NewId();
        var client = coordinator.Runs();
        string invocationId;
        var now = DateTime.UtcNow;
        await using (var agent = await FakeAgent.ConnectAsync(coordinator, id))
            await agent.CloseAsync();
        await WaitOfflineAsync(coordinator, id);
        await using (var db = coordinator.Db())
        {
            db.Runs.Add(new RunRecord { Id = "r-0overdue0000000000", Task = "probe", CreatedBy = "test", CreatedAt = now.AddHours(-2), DeliveryTimeoutMs = 600_000, ExecutionTimeoutMs = 60_000 });
            invocationId = "r-0overdue0000000000." + id;
            db.Invocations.Add(new InvocationRecord { Id = invocationId, RunId = "r-0overdue0000000000", AgentId = id, Hostname = id, CreatedAt = now.AddHours(-2), UpdatedAt = now.AddHours(-2), State = InvocationState.Dispatched, DispatchedAt = now.AddHours(-2) });
            await db.SaveChangesAsync();
        }
        await using var again = await FakeAgent.ConnectAsync(coordinator, id);
        var run = await client.FinishedAsync("r-0overdue0000000000");
        Assert.Equal(InvocationState.TimedOut, run.Invocations[0].State);
        Assert.False(again.HasPending(CoordinatorMessage.BodyOneofCase.Dispatch));
    }

    [Fact]
    public async Task Responses_StaySmall_CreateRunWithoutInvocations_WatchWithoutOutput_GetRunCapsOutputs()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var created = await client.CreateRunAsync(RunsTestKit.Probe(agent.Id));
        Assert.Empty(created.Invocations);
        Assert.Equal(1, created.Counts.Total);
        var dispatch = await agent.NextDispatchAsync();
        await agent.SendAsync(FakeAgent.Output(dispatch.InvocationId, 0, "hello"u8.ToArray()), FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Succeeded, outputBytes: 5));
        await client.WaitAsync(created.Id, r => r.Status == RunStatus.Succeeded && r.Invocations[0].OutputHead == "hello", "finished with output");
        using (var watch = client.WatchRun(new GetRunRequest { Id = created.Id }))
        {
            Assert.True(await watch.ResponseStream.MoveNext().DefaultTimeout());
            var watched = Assert.Single(watch.ResponseStream.Current.Invocations);
            Assert.Equal(InvocationState.Succeeded, watched.State);
            Assert.Equal("all good", watched.Summary);
            Assert.Equal("", watched.OutputHead);
            Assert.Empty(watched.Transitions);
        }

        // 150 finished invocations with output: GetRun carries at most 100 outputs.
        var now = DateTime.UtcNow;
        await using (var db = coordinator.Db())
        {
            db.Runs.Add(new RunRecord { Id = "r-0bigrun00000000000", Task = "probe", CreatedBy = "test", CreatedAt = now, Status = RunStatus.Succeeded, FinishedAt = now });
            for (var i = 0; i < 150; i++)
                db.Invocations.Add(new InvocationRecord
                {
                    Id = $"r-0bigrun00000000000.h{i}", RunId = "r-0bigrun00000000000", AgentId = $"h{i}", Hostname = $"h{i}", Ordinal = i, CreatedAt = now, UpdatedAt = now,
                    State = InvocationState.Succeeded, ResultReported = true, OutputFinalized = true, OutputBytes = 3, OutputHead = "out"u8.ToArray(),
                });
            await db.SaveChangesAsync();
        }
        var big = await client.GetRunAsync(new GetRunRequest { Id = "r-0bigrun00000000000" });
        Assert.Equal(150, big.Invocations.Count);
        Assert.Equal(100, big.Invocations.Count(i => i.OutputHead == "out"));
        Assert.All(big.Invocations.Where(i => i.OutputHead == ""), i => Assert.True(i.OutputTruncated));
    }

    /// <summary>A run on a new agent whose invocation is dispatched (and started, if asked); then the agent drops and is offline.</summary>
    static async Task<(string RunId, string InvocationId)> DispatchThenDropAsync(CoordinatorFactory coordinator, string id, bool started)
    {
        string runId, invocationId;
        await using (var agent = await FakeAgent.ConnectAsync(coordinator, id))
        {
            runId = (await coordinator.Runs().CreateRunAsync(RunsTestKit.Probe(id))).Id;
            invocationId = (await agent.NextDispatchAsync()).InvocationId;
            if (started) await agent.SendAsync(FakeAgent.Started(invocationId));
            await agent.CloseAsync();
        }
        await WaitOfflineAsync(coordinator, id);
        return (runId, invocationId);
    }

    static Task WaitOfflineAsync(CoordinatorFactory coordinator, string id)
    {
        var agents = new Protocol.V1.Agents.AgentsClient(coordinator.Channel());
        return Eventually.UntilAsync(async () => (await agents.GetAgentAsync(new GetAgentRequest { Id = id })).Status == AgentStatus.Offline, "agent offline");
    }
}
