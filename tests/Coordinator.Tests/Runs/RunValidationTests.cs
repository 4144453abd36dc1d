using System.Net;
using System.Net.Http.Json;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Tests.Runs;

/// <summary>CreateRun checks everything before anything is stored or dispatched; every error names the field.</summary>
public sealed class RunValidationTests : IAsyncLifetime
{
    readonly CoordinatorFactory coordinator = new CoordinatorFactory(Store.Sqlite).Fast();
    FakeAgent agent = null!;

    public async Task InitializeAsync() => agent = await FakeAgent.ConnectAsync(coordinator, FakeAgent.NewId(), tags: new Dictionary<string, string> { ["role"] = "web" });

    public async Task DisposeAsync()
    {
        await agent.DisposeAsync();
        await coordinator.DisposeAsync();
    }

    public static TheoryData<string, string> BadRequests => new()
    {
        { """{"task":"nosuch","hosts":["@"]}""", "task: 'nosuch' is not offered by any targeted host" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org","count":"many"}}""", "parameters.count: 'many' is not a valid integer" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org","verbose":"yes"}}""", "parameters.verbose" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org","window":"soon"}}""", "parameters.window" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org","nope":"1"}}""", "parameters: 'nope' is not a parameter of task 'probe'" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"UPPER"}}""", "parameters.target: 'UPPER' does not match the pattern" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org","password":"x Y"},"max_errors":"x"}""", "max_errors: 'x'" },
        { """{"task":"probe","hosts":["@"]}""", "parameters.target: required by task 'probe'" },
        { """{"task":"probe","hosts":["no-such-host"],"parameters":{"target":"a.org"}}""", "hosts: 'no-such-host' is not a known agent id or hostname" },
        { """{"task":"probe","tags":["role=nothing-has-this"],"parameters":{"target":"a.org"}}""", "tags: 'role=nothing-has-this' match no host" },
        { """{"task":"probe","parameters":{"target":"a.org"}}""", "hosts: name at least one host" },
        { """{"task":"wipe","hosts":["@"]}""", "confirm: task 'wipe' is destructive" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org"},"max_errors":"ten"}""", "max_errors: 'ten' is not a count or a percentage" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org"},"max_concurrency":"0"}""", "max_concurrency: '0' must be at least 1" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org"},"max_concurrency":"150%"}""", "max_concurrency: '150%' is more than 100%" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org"},"delivery_timeout":"5 minutes"}""", "delivery_timeout: '5 minutes' is not a positive duration" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org"},"execution_timeout":"-1s"}""", "execution_timeout" },
        { """{"task":"probe","hosts":["@"],"parameters":{"target":"a.org"},"canary":3}""", "canary: 3 is more than the 1 targeted hosts" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task CreateRun_OverRest_Answers400NamingTheField_AndStoresNothing(string json, string expected)
    {
        using var http = coordinator.CreateClient();
        using var content = new StringContent(json.Replace("\"@\"", $"\"{agent.Id}\"", StringComparison.Ordinal), System.Text.Encoding.UTF8, "application/json");
        using var response = await http.PostAsync(new Uri("/api/v1/runs", UriKind.Relative), content);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(expected, body, StringComparison.Ordinal);
        Assert.DoesNotContain("x Y", body, StringComparison.Ordinal); // a secret value is never echoed
        await using var db = coordinator.Db();
        Assert.Equal(0, await db.Runs.CountAsync());
    }

    [Fact]
    public async Task CreateRun_OverGrpc_IsInvalidArgument()
    {
        var error = await Assert.ThrowsAsync<RpcException>(() => coordinator.Runs().CreateRunAsync(new CreateRunRequest { Task = "wipe", Hosts = { agent.Id } }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.StartsWith("confirm:", error.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PreviewRun_ResolvesHostsByTag_WithCanaries_WithoutCreatingAnything()
    {
        var preview = await coordinator.Runs().PreviewRunAsync(new CreateRunRequest { Task = "wipe", Tags = { "role=web" }, Canary = 1 });
        var host = Assert.Single(preview.Hosts);
        Assert.Equal(agent.Id, host.AgentId);
        Assert.True(host.Online);
        Assert.True(host.Canary);
        Assert.True(preview.Destructive);
        await using var db = coordinator.Db();
        Assert.Equal(0, await db.Runs.CountAsync());
    }

    [Fact]
    public async Task SameClientToken_Twice_ReturnsTheSameRun()
    {
        var client = coordinator.Runs();
        var request = RunsTestKit.Probe(agent.Id);
        request.ClientToken = "deploy-42";
        var first = await client.CreateRunAsync(request);
        var second = await client.CreateRunAsync(request);
        var third = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => client.CreateRunAsync(request).ResponseAsync));
        Assert.Equal(first.Id, second.Id);
        Assert.All(third, r => Assert.Equal(first.Id, r.Id));
        await using var db = coordinator.Db();
        Assert.Equal(1, await db.Runs.CountAsync());
        Assert.Equal(1, await db.Invocations.CountAsync());
    }

    [Fact]
    public async Task RestCreate_ThenGetAndList_ShowTheRun()
    {
        using var http = coordinator.CreateClient();
        using var created = await http.PostAsJsonAsync(new Uri("/api/v1/runs", UriKind.Relative),
            new Dictionary<string, object> { ["task"] = "probe", ["hosts"] = new[] { agent.Id }, ["parameters"] = new Dictionary<string, string> { ["target"] = "a.org" } });
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var run = Google.Protobuf.JsonParser.Default.Parse<Run>(await created.Content.ReadAsStringAsync());
        using var listed = await http.GetAsync(new Uri("/api/v1/runs?task=probe", UriKind.Relative));
        var list = Google.Protobuf.JsonParser.Default.Parse<ListRunsResponse>(await listed.Content.ReadAsStringAsync());
        Assert.Equal(run.Id, Assert.Single(list.Runs).Id);
        Assert.Equal("probe", list.Runs[0].Task);
        Assert.Equal(run.Id, (await coordinator.Runs().GetRunAsync(new GetRunRequest { Id = run.Id })).Id);
    }
}
