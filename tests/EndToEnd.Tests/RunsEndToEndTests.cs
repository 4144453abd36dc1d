using System.Text.Json;
using Fleet.EndToEnd.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;

namespace Fleet.EndToEnd.Tests;

/// <summary>
/// Runs with real coordinator and agent processes over loopback gRPC on real PostgreSQL and Redis. Tasks are real:
/// app.command runs the commands each agent's local policy declares (small shell scripts written by the test).
/// </summary>
public sealed class RunsEndToEndTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>, IAsyncLifetime
{
    readonly TempDirectory dir = new();
    readonly List<IAsyncDisposable> processes = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        File.WriteAllText(dir.Combine("release"), ""); // lets any blocking test command end
        foreach (var p in processes) await p.DisposeAsync();
        dir.Dispose();
    }

    async Task<CoordinatorProcess> StartCoordinatorAsync()
    {
        var coordinator = await CoordinatorProcess.StartOnPostgresAsync(postgres, dir);
        processes.Add(coordinator);
        return coordinator;
    }

    /// <summary>An agent with a fixed id whose policy allows health.check, logs.scan under the test directory and the given commands.</summary>
    async Task<AgentProcess> StartAgentAsync(CoordinatorProcess coordinator, string id, params (string Name, string Script)[] commands)
    {
        var agentDir = dir.Combine(id);
        Directory.CreateDirectory(agentDir);
        var declared = new Dictionary<string, object>();
        foreach (var (name, script) in commands)
        {
            var path = Path.Combine(agentDir, name + ".sh");
            File.WriteAllText(path, "#!/bin/sh\n" + script + "\n");
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            declared[name] = new Dictionary<string, object> { ["command"] = new[] { path }, ["workingDirectory"] = dir.Path };
        }
        var policy = new Dictionary<string, object>
        {
            ["tasks"] = new Dictionary<string, object>
            {
                ["health.check"] = new Dictionary<string, object>(),
                ["logs.scan"] = new Dictionary<string, object> { ["paths"] = new[] { dir.Path + "/**" } },
                ["app.command"] = new Dictionary<string, object> { ["commands"] = declared },
            },
        };
        var agent = AgentProcess.Start(agentDir, coordinator.GrpcUrl, new Dictionary<string, string> { ["role"] = "e2e" },
            new AgentSetup { AgentId = id, PolicyJson = JsonSerializer.Serialize(policy) });
        processes.Add(agent);
        await WaitOnlineAsync(coordinator, id);
        return agent;
    }

    static async Task WaitOnlineAsync(CoordinatorProcess coordinator, string id) =>
        await Eventually.UntilAsync(coordinator.AgentStatusesAsync, s => s.GetValueOrDefault(id) == "AGENT_STATUS_ONLINE", $"agent {id} online", TimeSpan.FromSeconds(30));

    static Runs.RunsClient Api(CoordinatorProcess coordinator) => new(coordinator.Channel());

    static Task<Run> WaitFinishedAsync(CoordinatorProcess coordinator, string runId, TimeSpan? timeout = null) =>
        Eventually.UntilAsync(async () =>
        {
            try { return await Api(coordinator).GetRunAsync(new GetRunRequest { Id = runId }); }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable) { return null; } // during a coordinator restart
        }, r => r is not null && r.Status != RunStatus.InProgress, $"run {runId} to finish", timeout ?? TimeSpan.FromSeconds(60))!;

    static InvocationState StateOf(Run run, string agentId) => run.Invocations.Single(i => i.AgentId == agentId).State;

    static CreateRunRequest Command(string command, params string[] hosts)
    {
        var request = new CreateRunRequest { Task = "app.command", Confirm = true };
        request.Parameters["command"] = command;
        request.Hosts.AddRange(hosts);
        return request;
    }

    [Fact]
    public async Task MaxErrorsZero_SecondHostFails_ThirdIsSkipped_AndAFailingCanaryStopsTheRest()
    {
        var coordinator = await StartCoordinatorAsync();
        await StartAgentAsync(coordinator, "e2e-a", ("check", "echo ok on a"), ("canary-check", "exit 3"));
        await StartAgentAsync(coordinator, "e2e-b", ("check", "echo broken on b; exit 1"), ("canary-check", "true"));
        await StartAgentAsync(coordinator, "e2e-c", ("check", "echo ok on c"), ("canary-check", "true"));

        var rated = Command("check", "e2e-a", "e2e-b", "e2e-c");
        rated.MaxConcurrency = "1";
        rated.MaxErrors = "0";
        var run = await WaitFinishedAsync(coordinator, (await Api(coordinator).CreateRunAsync(rated)).Id);

        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Equal(InvocationState.Succeeded, StateOf(run, "e2e-a"));
        Assert.Equal(InvocationState.Failed, StateOf(run, "e2e-b"));
        Assert.Equal(InvocationState.Skipped, StateOf(run, "e2e-c"));
        Assert.Contains("broken on b", run.Invocations.Single(i => i.AgentId == "e2e-b").OutputHead);

        var canaried = Command("canary-check", "e2e-a", "e2e-b", "e2e-c");
        canaried.Canary = 1;
        var canaryRun = await WaitFinishedAsync(coordinator, (await Api(coordinator).CreateRunAsync(canaried)).Id);
        var canary = Assert.Single(canaryRun.Invocations, i => i.Canary);
        Assert.Equal(InvocationState.Failed, canary.State);
        Assert.All(canaryRun.Invocations.Where(i => !i.Canary), i => Assert.Equal(InvocationState.Skipped, i.State));
        Assert.Contains("canary", canaryRun.StatusReason, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task CoordinatorRestartedWhileATaskRuns_TheTaskRunsOnce_AndItsResultIsStoredOnce()
    {
        var coordinator = await StartCoordinatorAsync();
        var counter = dir.Combine("runs-of-slow.txt");
        var release = dir.Combine("release");
        await StartAgentAsync(coordinator, "e2e-slow", ("slow", $"echo started >> {counter}; while [ ! -f {release} ]; do sleep 0.1; done; echo done"));

        var run = await Api(coordinator).CreateRunAsync(Command("slow", "e2e-slow"));
        await Eventually.UntilAsync(() => File.Exists(counter), "the task to start");

        await coordinator.RestartAsync();
        File.WriteAllText(release, "");
        var finished = await WaitFinishedAsync(coordinator, run.Id);

        Assert.Equal(RunStatus.Succeeded, finished.Status);
        Assert.Single(File.ReadAllLines(counter)); // ran once, although the restarted coordinator dispatched it again
        var audit = new Protocol.V1.Audit.AuditClient(coordinator.Channel());
        var events = await audit.ListAuditEventsAsync(new ListAuditEventsRequest { Action = "run.invocation.finished", Host = "e2e-slow" });
        Assert.Single(events.Events, e => e.Target.Contains(run.Id, StringComparison.Ordinal));
    }

    [Fact]
    public async Task AgentKilledMidTask_TheInvocationEndsFailedInterrupted_AndIsNotRunAgain()
    {
        var coordinator = await StartCoordinatorAsync();
        var counter = dir.Combine("runs-of-stuck.txt");
        var agent = await StartAgentAsync(coordinator, "e2e-kill", ("stuck", $"echo started >> {counter}; while [ ! -f {dir.Combine("never")} ]; do sleep 0.1; done"));

        var run = await Api(coordinator).CreateRunAsync(Command("stuck", "e2e-kill"));
        await Eventually.UntilAsync(() => File.Exists(counter), "the task to start");
        await agent.KillAsync();
        agent.Start();

        var finished = await WaitFinishedAsync(coordinator, run.Id);
        var invocation = Assert.Single(finished.Invocations);
        Assert.Equal(InvocationState.Failed, invocation.State);
        Assert.Equal("interrupted", invocation.FailureKind);
        Assert.Single(File.ReadAllLines(counter));
    }

    [Fact]
    public async Task OfflineHost_IsDelayed_ThenSucceedsWhenItConnects_OrTimesOutUndelivered()
    {
        var coordinator = await StartCoordinatorAsync();
        var agent = await StartAgentAsync(coordinator, "e2e-away", ("hello", "echo hello"));
        await agent.StopAsync();
        await Eventually.UntilAsync(coordinator.AgentStatusesAsync, s => s.GetValueOrDefault("e2e-away") == "AGENT_STATUS_OFFLINE", "the agent offline", TimeSpan.FromSeconds(30));

        var waiting = Command("hello", "e2e-away");
        waiting.DeliveryTimeout = "10m";
        var run = await Api(coordinator).CreateRunAsync(waiting);
        await Eventually.UntilAsync(async () => StateOf(await Api(coordinator).GetRunAsync(new GetRunRequest { Id = run.Id }), "e2e-away") == InvocationState.Delayed, "the invocation delayed");
        agent.Start();
        var delivered = await WaitFinishedAsync(coordinator, run.Id);
        Assert.Equal(InvocationState.Succeeded, StateOf(delivered, "e2e-away"));
        Assert.Contains(delivered.Invocations.Single().Transitions, t => t.State == InvocationState.Delayed);

        await agent.StopAsync();
        await Eventually.UntilAsync(coordinator.AgentStatusesAsync, s => s.GetValueOrDefault("e2e-away") == "AGENT_STATUS_OFFLINE", "the agent offline again", TimeSpan.FromSeconds(30));
        var impatient = Command("hello", "e2e-away");
        impatient.DeliveryTimeout = "2s";
        var undelivered = await WaitFinishedAsync(coordinator, (await Api(coordinator).CreateRunAsync(impatient)).Id);
        Assert.Equal(InvocationState.DeliveryTimedOut, StateOf(undelivered, "e2e-away"));
    }

    [Fact]
    public async Task Refusals_NameThePolicyRule_TheTask_TheParameter_AndConfirm()
    {
        var coordinator = await StartCoordinatorAsync();
        await StartAgentAsync(coordinator, "e2e-strict", ("hello", "echo hello"));
        var api = Api(coordinator);

        var outside = new CreateRunRequest { Task = "logs.scan", Hosts = { "e2e-strict" } };
        outside.Parameters["path"] = "/etc/shadow";
        var refused = await WaitFinishedAsync(coordinator, (await api.CreateRunAsync(outside)).Id);
        var invocation = Assert.Single(refused.Invocations);
        Assert.Equal(InvocationState.Failed, invocation.State);
        Assert.Equal("policy", invocation.FailureKind);
        Assert.Contains("not permitted by local policy", invocation.Error, StringComparison.Ordinal);

        var notDeclared = await WaitFinishedAsync(coordinator, (await api.CreateRunAsync(Command("rm-rf", "e2e-strict"))).Id);
        Assert.Contains("not permitted by local policy", Assert.Single(notDeclared.Invocations).Error, StringComparison.Ordinal);

        var unknown = await Assert.ThrowsAsync<RpcException>(() => api.CreateRunAsync(new CreateRunRequest { Task = "db.drop", Hosts = { "e2e-strict" } }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, unknown.StatusCode);
        Assert.Contains("task", unknown.Status.Detail, StringComparison.Ordinal);

        var badParameter = new CreateRunRequest { Task = "logs.scan", Hosts = { "e2e-strict" } };
        badParameter.Parameters["path"] = dir.Combine("x.log");
        badParameter.Parameters["lines"] = "many";
        var bad = await Assert.ThrowsAsync<RpcException>(() => api.CreateRunAsync(badParameter).ResponseAsync);
        Assert.Contains("lines", bad.Status.Detail, StringComparison.Ordinal);

        var unconfirmed = Command("hello", "e2e-strict");
        unconfirmed.Confirm = false;
        var noConfirm = await Assert.ThrowsAsync<RpcException>(() => api.CreateRunAsync(unconfirmed).ResponseAsync);
        Assert.Contains("confirm", noConfirm.Status.Detail, StringComparison.Ordinal);

        var cli = await Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "run", "app.command", "--host", "e2e-strict", "--param", "command=hello");
        Assert.NotEqual(0, cli.ExitCode);
        Assert.Contains("confirm", cli.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LargeOutput_HeadAndTailInline_FullOutputDownloadsByteIdentical_AndTheSecretIsMasked()
    {
        var coordinator = await StartCoordinatorAsync();
        await StartAgentAsync(coordinator, "e2e-loud", ("loud", "echo \"token is $FLEET_TOKEN\"; seq 1 100000; echo \"again $FLEET_TOKEN\""));
        const string secret = "s3cr3t-Tok3n-value";

        var request = Command("loud", "e2e-loud");
        request.Parameters["token"] = secret;
        var run = await WaitFinishedAsync(coordinator, (await Api(coordinator).CreateRunAsync(request)).Id);
        var invocation = Assert.Single(run.Invocations);
        Assert.Equal(InvocationState.Succeeded, invocation.State);

        var expected = "token is ***\n" + string.Concat(Enumerable.Range(1, 100_000).Select(i => i + "\n")) + "again ***\n";
        Assert.True(invocation.OutputTruncated);
        Assert.StartsWith("token is ***\n1\n2\n", invocation.OutputHead, StringComparison.Ordinal);
        Assert.EndsWith("99999\n100000\nagain ***\n", invocation.OutputTail, StringComparison.Ordinal);
        Assert.True(invocation.OutputHead.Length + invocation.OutputTail.Length < expected.Length);

        using var http = new HttpClient();
        var full = await http.GetByteArrayAsync($"{coordinator.RestUrl}/api/v1/runs/{run.Id}/invocations/e2e-loud/output");
        Assert.Equal(System.Text.Encoding.UTF8.GetBytes(expected), full);
        var cli = await Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "runs", "output", run.Id, "e2e-loud");
        Assert.Equal(expected, cli.Stdout);

        Assert.DoesNotContain(secret, run.ToString(), StringComparison.Ordinal);
        Assert.Equal("***", run.Parameters["token"]);
    }

    [Fact]
    public async Task SameClientTokenTwice_GivesOneRun()
    {
        var coordinator = await StartCoordinatorAsync();
        await StartAgentAsync(coordinator, "e2e-once", ("hello", "echo hello"));

        var first = await Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "run", "health.check", "--host", "e2e-once", "--client-token", "deploy-42", "--json");
        var second = await Fleetctl.RunAsync("--coordinator", coordinator.GrpcUrl, "run", "health.check", "--host", "e2e-once", "--client-token", "deploy-42", "--json");
        Assert.Equal(0, first.ExitCode);
        Assert.Equal(0, second.ExitCode);
        var id = JsonDocument.Parse(first.Stdout).RootElement.GetProperty("id").GetString();
        Assert.Equal(id, JsonDocument.Parse(second.Stdout).RootElement.GetProperty("id").GetString());
        var list = await Api(coordinator).ListRunsAsync(new ListRunsRequest { Task = "health.check" });
        Assert.Single(list.Runs);
    }
}
