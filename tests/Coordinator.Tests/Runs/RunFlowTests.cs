using System.Text;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using V1TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Coordinator.Tests.Runs;

/// <summary>Runs end to end against fake agents: dispatch rules, results, redelivery, cancel, output.</summary>
public sealed class RunFlowTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    public static TheoryData<Store> Stores => RunsTestKit.Stores;

    CoordinatorFactory Coordinator(Store store) => postgres.Coordinator(store);

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task MaxConcurrencyOne_MaxErrorsZero_SecondHostFails_ThirdIsSkipped(Store store)
    {
        using var coordinator = Coordinator(store);
        await using var a = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("a"));
        await using var b = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("b"));
        await using var c = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("c"));
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(a.Id, b.Id, c.Id);
        request.MaxConcurrency = "1";
        request.MaxErrors = "0";
        var run = await client.CreateRunAsync(request);

        var first = await a.RunNextAsync(V1TaskStatus.Succeeded);
        Assert.Equal($"{run.Id}.{a.Id}", first.InvocationId);
        Assert.Equal("example.org", first.Parameters["target"]);
        await b.RunNextAsync(V1TaskStatus.Failed);

        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal(InvocationState.Succeeded, done.On(a).State);
        Assert.Equal(InvocationState.Failed, done.On(b).State);
        Assert.Equal("it broke", done.On(b).Error);
        Assert.Equal(InvocationState.Skipped, done.On(c).State);
        Assert.Equal("max errors (0) reached", done.StatusReason);
        Assert.False(c.HasPending(CoordinatorMessage.BodyOneofCase.Dispatch));
        Assert.Equal(1, done.Counts.Skipped);
        await using var db = coordinator.Db();
        Assert.Equal(2, await db.Set<Coordinator.Audit.AuditRecord>().CountAsync(r => r.Action == "run.invocation.finished" && r.Target == "run:" + run.Id));
        Assert.Equal(1, await db.Set<Coordinator.Audit.AuditRecord>().CountAsync(r => r.Action == "run.finished" && r.Target == "run:" + run.Id));
    }

    [Fact]
    public async Task FailedCanary_SkipsTheOtherHosts()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var a = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("a"));
        await using var b = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("b"));
        await using var c = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("c"));
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(a.Id, b.Id, c.Id);
        request.Canary = 1;
        var run = await client.CreateRunAsync(request);
        Assert.True((await client.GetRunAsync(new GetRunRequest { Id = run.Id })).On(a).Canary); // CreateRun answers with the counts only

        await a.RunNextAsync(V1TaskStatus.Failed);

        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("canary failed", done.StatusReason);
        Assert.Equal(InvocationState.Skipped, done.On(b).State);
        Assert.Equal(InvocationState.Skipped, done.On(c).State);
        Assert.False(b.HasPending(CoordinatorMessage.BodyOneofCase.Dispatch));
    }

    [Fact]
    public async Task SucceededCanary_ReleasesTheOthers()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var a = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("a"));
        await using var b = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("b"));
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(a.Id, b.Id);
        request.Canary = 1;
        var run = await client.CreateRunAsync(request);
        await a.RunNextAsync(V1TaskStatus.Succeeded);
        await b.RunNextAsync(V1TaskStatus.Succeeded);
        Assert.Equal(RunStatus.Succeeded, (await client.FinishedAsync(run.Id)).Status);
    }

    [Fact]
    public async Task OfflineHost_IsDelayed_ThenDispatchedWhenItConnects()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var id = await KnownOfflineAgentAsync(coordinator);
        var client = coordinator.Runs();

        var run = await client.CreateRunAsync(RunsTestKit.Probe(id));
        await client.WaitAsync(run.Id, r => r.Invocations[0].State == InvocationState.Delayed, "invocation delayed");

        await using var agent = await FakeAgent.ConnectAsync(coordinator, id);
        await agent.RunNextAsync(V1TaskStatus.Succeeded);
        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Equal([InvocationState.Delayed, InvocationState.Dispatched, InvocationState.Running, InvocationState.Succeeded],
            done.Invocations[0].Transitions.Select(t => t.State));
    }

    [Fact]
    public async Task OfflineHost_PastTheDeliveryTimeout_IsDeliveryTimedOut()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var id = await KnownOfflineAgentAsync(coordinator);
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(id);
        request.DeliveryTimeout = "1s";
        var run = await client.CreateRunAsync(request);

        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal(InvocationState.DeliveryTimedOut, done.Invocations[0].State);
        Assert.Equal(1, done.Counts.DeliveryTimedOut);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task RedeliveredResultBatch_IsStoredOnce(Store store)
    {
        using var coordinator = Coordinator(store);
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(agent.Id));
        var dispatch = await agent.NextDispatchAsync();
        var text = Encoding.UTF8.GetBytes("line one\nline two\n");
        var batch = FakeAgent.Batch(FakeAgent.Started(dispatch.InvocationId), FakeAgent.Output(dispatch.InvocationId, 0, text),
            FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Succeeded, text.Length));
        await agent.SendAsync(batch);
        await agent.SendAsync(batch); // the ack was lost: the agent sends it again
        // The same output again in a new batch (the agent re-chunked after a restart): still once.
        await agent.SendAsync(FakeAgent.Output(dispatch.InvocationId, 0, text));

        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Succeeded, done.Status);
        Assert.Single(done.Invocations[0].Transitions, t => t.State == InvocationState.Succeeded);
        Assert.Single(done.Invocations[0].Transitions, t => t.State == InvocationState.Running);
        await Eventually.UntilAsync(async () => (await client.GetRunAsync(new GetRunRequest { Id = run.Id })).Invocations[0].OutputHead.Length > 0, "output finalized");
        var output = await ReadOutputAsync(coordinator, run.Id, agent.Id);
        Assert.Equal(text, output);
        await using var db = coordinator.Db();
        Assert.Equal(1, await db.Set<Coordinator.Audit.AuditRecord>().CountAsync(r => r.Action == "run.invocation.finished" && r.Target == "run:" + run.Id));
    }

    [Fact]
    public async Task DispatchedInvocation_IsSentAgain_WhenTheAgentReconnects()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var id = FakeAgent.NewId();
        var client = coordinator.Runs();
        string invocationId;
        string runId;
        await using (var agent = await FakeAgent.ConnectAsync(coordinator, id))
        {
            runId = (await client.CreateRunAsync(RunsTestKit.Probe(id))).Id;
            invocationId = (await agent.NextDispatchAsync()).InvocationId;
            await agent.CloseAsync(); // the connection drops before any result
        }
        await using var again = await FakeAgent.ConnectAsync(coordinator, id);
        var redelivered = await again.NextDispatchAsync();
        Assert.Equal(invocationId, redelivered.InvocationId);
        await again.SendAsync(FakeAgent.Finished(invocationId, V1TaskStatus.Succeeded));
        Assert.Equal(RunStatus.Succeeded, (await client.FinishedAsync(runId)).Status);
        await using var db = coordinator.Db();
        Assert.Equal(2, (await db.Invocations.SingleAsync(i => i.Id == invocationId)).DispatchAttempts);
    }

    [Fact]
    public async Task CancelRun_SendsCancelInvocation_ToTheRunningAgent_AndCancelsQueuedHosts()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var a = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("a"));
        await using var b = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("b"));
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(a.Id, b.Id);
        request.MaxConcurrency = "1";
        var run = await client.CreateRunAsync(request);
        var dispatch = await a.NextDispatchAsync();
        await a.SendAsync(FakeAgent.Started(dispatch.InvocationId));
        await client.WaitAsync(run.Id, r => r.On(a).State == InvocationState.Running, "running");

        var cancelled = await client.CancelRunAsync(new CancelRunRequest { Id = run.Id, Reason = "wrong window" });
        Assert.Equal(InvocationState.Cancelled, cancelled.On(b).State);
        var cancel = (await a.NextAsync(CoordinatorMessage.BodyOneofCase.Cancel)).Cancel;
        Assert.Equal(dispatch.InvocationId, cancel.InvocationId);
        Assert.Contains("wrong window", cancel.Reason, StringComparison.Ordinal);

        await a.SendAsync(FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Cancelled));
        var done = await client.FinishedAsync(run.Id);
        Assert.Equal(RunStatus.Cancelled, done.Status);
        Assert.Equal(InvocationState.Cancelled, done.On(a).State);
        Assert.StartsWith("cancelled by alice", done.StatusReason, StringComparison.Ordinal);
        await using var db = coordinator.Db();
        Assert.Equal(1, await db.Set<Coordinator.Audit.AuditRecord>().CountAsync(r => r.Action == "run.cancelled" && r.Target == "run:" + run.Id));
    }

    [Fact]
    public async Task RetryFailedOnly_CreatesANewRun_OnTheHostsThatDidNotSucceed()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var a = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("a"));
        await using var b = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId("b"));
        var client = coordinator.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(a.Id, b.Id));
        await a.RunNextAsync(V1TaskStatus.Succeeded);
        await b.RunNextAsync(V1TaskStatus.Failed);
        await client.FinishedAsync(run.Id);

        var retry = await client.RetryRunAsync(new RetryRunRequest { Id = run.Id, FailedOnly = true });
        Assert.Equal(run.Id, retry.RetryOf);
        Assert.Equal(b.Id, Assert.Single(retry.Invocations).AgentId);
        var again = await b.RunNextAsync(V1TaskStatus.Succeeded);
        Assert.Equal(retry.Id, again.RunId);
        Assert.Equal(RunStatus.Succeeded, (await client.FinishedAsync(retry.Id)).Status);
    }

    [Fact]
    public async Task LargeOutput_KeepsHeadAndTailInline_AndDownloadsByteIdentical_WithSecretsMasked()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(agent.Id);
        request.Parameters["password"] = FakeAgent.Secret;
        var run = await client.CreateRunAsync(request);
        var dispatch = await agent.NextDispatchAsync();
        Assert.Equal(FakeAgent.Secret, dispatch.Parameters["password"]); // the agent needs the real value

        var random = new Random(7);
        var output = new byte[200 * 1024 + 17];
        for (var i = 0; i < output.Length; i++) output[i] = (byte)(i % 81 == 80 ? '\n' : 'a' + random.Next(26));
        var leaked = Encoding.UTF8.GetBytes(FakeAgent.Secret);
        leaked.CopyTo(output, 1000); // the agent failed to mask it: the coordinator does
        var updates = new List<TaskUpdate> { FakeAgent.Started(dispatch.InvocationId) };
        for (var offset = 0; offset < output.Length; offset += 30_000)
            updates.Add(FakeAgent.Output(dispatch.InvocationId, offset, output[offset..Math.Min(output.Length, offset + 30_000)]));
        await agent.SendAsync([.. updates.Take(4)]);
        await agent.SendAsync([.. updates.Skip(4), FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Succeeded, output.Length)]);

        var expected = (byte[])output.Clone();
        Array.Fill(expected, (byte)'*', 1000, leaked.Length);
        await Eventually.UntilAsync(async () =>
        {
            await using var finalized = coordinator.Db();
            return await finalized.Invocations.AnyAsync(i => i.RunId == run.Id && i.OutputFinalized);
        }, "output finalized");
        var done = await client.GetRunAsync(new GetRunRequest { Id = run.Id });
        var invocation = done.Invocations[0];
        Assert.True(invocation.OutputTruncated);
        Assert.Equal((ulong)output.Length, invocation.OutputBytes);
        Assert.Equal(Encoding.UTF8.GetString(expected, 0, 64 * 1024), invocation.OutputHead);
        Assert.Equal(Encoding.UTF8.GetString(expected, expected.Length - 64 * 1024, 64 * 1024), invocation.OutputTail);
        Assert.Equal(expected, await ReadOutputAsync(coordinator, run.Id, agent.Id));
        Assert.Equal(expected, await ReadOutputAsync(coordinator, run.Id, agent.Id + ".example")); // by hostname

        var streamed = new List<byte>();
        using var call = client.GetInvocationOutput(new GetInvocationOutputRequest { RunId = run.Id, AgentId = agent.Id });
        await foreach (var chunk in call.ResponseStream.ReadAllAsync())
            streamed.AddRange(chunk.Data);
        Assert.Equal(expected, streamed.ToArray());
        await using var db = coordinator.Db();
        Assert.Equal(0, await db.InvocationOutput.CountAsync()); // staging chunks deleted
    }

    [Fact]
    public async Task SecretParameter_NeverAppearsInApiResponsesOrTheAuditTrail()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(agent.Id);
        request.Parameters["password"] = FakeAgent.Secret;
        request.Parameters["count"] = "3";
        var created = await client.CreateRunAsync(request);
        Assert.Equal("***", created.Parameters["password"]);
        Assert.Equal("3", created.Parameters["count"]);
        var dispatch = await agent.NextDispatchAsync();
        var finished = FakeAgent.Finished(dispatch.InvocationId, V1TaskStatus.Succeeded);
        finished.Finished.Summary = $"logged in with {FakeAgent.Secret}"; // the agent slipped: the coordinator masks it
        finished.Finished.ResultJson = $$"""{"password":"{{FakeAgent.Secret}}"}""";
        await agent.SendAsync(finished);
        var done = await client.FinishedAsync(created.Id);
        Assert.Equal($"logged in with {new string('*', FakeAgent.Secret.Length)}", done.Invocations[0].Summary);

        using var http = coordinator.CreateClient();
        var rest = await http.GetStringAsync(new Uri($"/api/v1/runs/{created.Id}", UriKind.Relative));
        var list = await http.GetStringAsync(new Uri("/api/v1/runs", UriKind.Relative));
        var watched = new List<Run>();
        using (var watch = client.WatchRun(new GetRunRequest { Id = created.Id }))
            await foreach (var r in watch.ResponseStream.ReadAllAsync()) watched.Add(r);
        Assert.DoesNotContain(FakeAgent.Secret, rest, StringComparison.Ordinal);
        Assert.DoesNotContain(FakeAgent.Secret, list, StringComparison.Ordinal);
        Assert.Contains("***", rest, StringComparison.Ordinal);
        Assert.All(watched, r => Assert.Equal("***", r.Parameters["password"]));
        Assert.Equal(RunStatus.Succeeded, watched[^1].Status);
        await using var db = coordinator.Db();
        var audit = await db.Set<Coordinator.Audit.AuditRecord>().Select(r => r.ParametersJson).ToListAsync();
        Assert.Contains(audit, p => p.Contains("***", StringComparison.Ordinal));
        Assert.DoesNotContain(audit, p => p.Contains(FakeAgent.Secret, StringComparison.Ordinal));
    }

    [Fact]
    public async Task WatchRun_StreamsChanges_UntilTheRunFinishes()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        await using var agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId());
        var client = coordinator.Runs();
        var run = await client.CreateRunAsync(RunsTestKit.Probe(agent.Id));
        using var watch = client.WatchRun(new GetRunRequest { Id = run.Id });
        Assert.True(await watch.ResponseStream.MoveNext().DefaultTimeout());
        Assert.Equal(RunStatus.InProgress, watch.ResponseStream.Current.Status);
        await agent.RunNextAsync(V1TaskStatus.Succeeded);
        Run last = watch.ResponseStream.Current;
        while (await watch.ResponseStream.MoveNext().DefaultTimeout()) last = watch.ResponseStream.Current;
        Assert.Equal(RunStatus.Succeeded, last.Status);
        Assert.NotNull(last.FinishedAt);
    }

    /// <summary>An agent the coordinator knows (with its catalog) that is not connected.</summary>
    static async Task<string> KnownOfflineAgentAsync(CoordinatorFactory coordinator)
    {
        var id = FakeAgent.NewId();
        await (await FakeAgent.ConnectAsync(coordinator, id)).CloseAsync();
        var agents = new Protocol.V1.Agents.AgentsClient(coordinator.Channel());
        await Eventually.UntilAsync(async () => (await agents.GetAgentAsync(new GetAgentRequest { Id = id })).Status == AgentStatus.Offline, "agent offline");
        return id;
    }

    internal static async Task<byte[]> ReadOutputAsync(CoordinatorFactory coordinator, string runId, string host)
    {
        using var http = coordinator.CreateClient();
        using var response = await http.GetAsync(new Uri($"/api/v1/runs/{runId}/invocations/{host}/output", UriKind.Relative));
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        return await response.Content.ReadAsByteArrayAsync();
    }
}
