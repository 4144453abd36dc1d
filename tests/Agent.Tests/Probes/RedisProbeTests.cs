using Fleet.Agent.Probes;
using Fleet.Testing;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Fleet.Agent.Tests.Probes;

public sealed class RedisProbeTests
{
    static ProbeSettings Redis(string address) => new() { Name = "cache", Kind = ProbeKinds.Redis, Address = address };

    [Fact]
    public async Task Redis_IsOk_WithPingLatencyAndMemoryAndStatsValues_AgainstARunningServer()
    {
        await using (var client = await ConnectionMultiplexer.ConnectAsync(TestServices.Redis))
        {
            var db = client.GetDatabase();
            var key = TestServices.UniqueName("probe");
            await db.StringSetAsync(key, "v", TimeSpan.FromMinutes(1));
            await db.StringGetAsync(key);                 // a hit
            await db.StringGetAsync(key + "-missing");    // a miss
        }

        var result = await ProbeTesting.RunOnceAsync(Redis(TestServices.Redis));

        Assert.True(result.Ok, result.Reason);
        Assert.Equal(TestServices.Redis, result.Target);
        Assert.True(result.LatencyMs > 0);
        Assert.True(result.Values["redis.used_memory_bytes"] > 0);
        Assert.True(result.Values["redis.mem_fragmentation_ratio"] > 0);
        Assert.InRange(result.Values["redis.keyspace_hit_ratio"], 0, 1);
        Assert.True(result.Values["redis.evicted_keys"] >= 0);
        Assert.True(result.Values["redis.expired_keys"] >= 0);
    }

    [Fact]
    public async Task Redis_Authenticates_AsAnAclUser()
    {
        var user = TestServices.UniqueName("probe");
        const string password = "Acl-Redis-Secret-1";
        await using var client = await ConnectionMultiplexer.ConnectAsync(TestServices.Redis + ",allowAdmin=true");
        var db = client.GetDatabase();
        await db.ExecuteAsync("ACL", "SETUSER", user, "on", ">" + password, "+ping", "+info");
        try
        {
            var ok = await ProbeTesting.RunOnceAsync(Redis(TestServices.Redis) with { Username = user, Password = password });
            var wrong = await ProbeTesting.RunOnceAsync(Redis(TestServices.Redis) with { Username = user, Password = "Not-" + password });

            Assert.True(ok.Ok, ok.Reason);
            Assert.True(ok.Values.ContainsKey("redis.used_memory_bytes"));
            Assert.False(wrong.Ok);
            Assert.StartsWith("AUTH failed: WRONGPASS", wrong.Reason, StringComparison.Ordinal);
            Assert.DoesNotContain(password, wrong.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            await db.ExecuteAsync("ACL", "DELUSER", user);
        }
    }

    [Fact]
    public async Task Redis_Fails_WhenAuthIsRefused_WithoutRevealingThePassword()
    {
        const string password = "Redis-Secret-Not-Configured";

        var result = await ProbeTesting.RunOnceAsync(Redis(TestServices.Redis) with { Password = password });

        Assert.False(result.Ok);
        Assert.StartsWith("AUTH failed:", result.Reason, StringComparison.Ordinal);
        Assert.DoesNotContain(password, result.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Redis_Fails_WithConnectionRefused_WhenThePortIsClosed()
    {
        var result = await ProbeTesting.RunOnceAsync(Redis($"127.0.0.1:{ProbeTesting.ClosedPort()}"));

        Assert.False(result.Ok);
        Assert.Equal("connection refused", result.Reason);
        Assert.Empty(result.Values);
    }

    [Fact]
    public async Task Redis_TimesOut_WaitingForPong_WhenTheServerNeverAnswers()
    {
        await using var server = new SilentServer();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var probe = ProbeTesting.Create(Redis(server.Address) with { Timeout = TimeSpan.FromSeconds(2) }, time);

        var run = probe.RunAsync(CancellationToken.None).AsTask();
        await server.Received.Task.DefaultTimeout(); // the PING has arrived: the probe is waiting for the answer
        time.Advance(TimeSpan.FromSeconds(2));
        var result = await run.DefaultTimeout();

        Assert.False(result.Ok);
        Assert.Equal("timed out after 2 s waiting for PONG", result.Reason);
    }

    [Fact]
    public async Task Redis_Fails_WhenTheServerIsNotRedis()
    {
        await using var server = new SilentServer("SSH-2.0-OpenSSH_9.2\r\n"u8.ToArray());

        var result = await ProbeTesting.RunOnceAsync(Redis(server.Address));

        Assert.False(result.Ok);
        Assert.Contains("Redis protocol error", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Redis_RunAsync_Throws_OnlyWhenTheCallerCancels()
    {
        await using var server = new SilentServer();
        var probe = ProbeTesting.Create(Redis(server.Address) with { Timeout = TimeSpan.FromMinutes(5) });
        using var cancel = new CancellationTokenSource();

        var run = probe.RunAsync(cancel.Token).AsTask();
        await server.Accepted.Task.DefaultTimeout();
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.DefaultTimeout());
    }
}
