using Fleet.Agent.Probes;
using Fleet.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Agent.Tests.Probes;

public sealed class HttpProbeTests : IAsyncLifetime
{
    readonly TestHttpServer server = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await server.DisposeAsync();

    static ProbeSettings Http(Uri url) => new() { Name = "api", Kind = ProbeKinds.Http, Url = url };

    [Fact]
    public async Task Http_IsOk_WithLatency_WhenTheServerAnswers200()
    {
        var result = await ProbeTesting.RunOnceAsync(Http(server.Url("/ok")));

        Assert.True(result.Ok, result.Reason);
        Assert.Equal("", result.Reason);
        Assert.Equal("api", result.Name);
        Assert.Equal("http", result.Kind);
        Assert.Equal(server.Url("/ok").ToString(), result.Target);
        Assert.True(result.LatencyMs > 0, $"latency {result.LatencyMs}");
        Assert.InRange(result.TimeUnixMs, DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeMilliseconds(), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }

    [Fact]
    public async Task Http_Fails_NamingTheStatus_WhenTheServerAnswers500()
    {
        var result = await ProbeTesting.RunOnceAsync(Http(server.Url("/fail")));

        Assert.False(result.Ok);
        Assert.StartsWith("status 500", result.Reason, StringComparison.Ordinal);
        Assert.Contains("expected 2xx", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http_IsOk_WhenTheStatusIsTheExpectedOne_EvenIfNot2xx()
    {
        var result = await ProbeTesting.RunOnceAsync(Http(server.Url("/fail")) with { ExpectedStatus = 500 });

        Assert.True(result.Ok, result.Reason);
    }

    [Fact]
    public async Task Http_DoesNotFollowRedirects_UnlessAskedTo()
    {
        var plain = await ProbeTesting.RunOnceAsync(Http(server.Url("/redirect")));
        var following = await ProbeTesting.RunOnceAsync(Http(server.Url("/redirect")) with { FollowRedirects = true });

        Assert.False(plain.Ok);
        Assert.StartsWith("status 302", plain.Reason, StringComparison.Ordinal);
        Assert.True(following.Ok, following.Reason);
    }

    [Fact]
    public async Task Http_IsOk_WhenTheBodyContainsTheTextAndMatchesThePattern()
    {
        var result = await ProbeTesting.RunOnceAsync(Http(server.Url("/body")) with
        {
            BodyContains = "\"status\":\"up\"",
            BodyMatches = "\"version\":\"1\\.\\d+\\.\\d+\"",
        });

        Assert.True(result.Ok, result.Reason);
    }

    [Fact]
    public async Task Http_Fails_WithBodyMismatch_WhenTheTextIsMissing()
    {
        var result = await ProbeTesting.RunOnceAsync(Http(server.Url("/body")) with { BodyContains = "\"status\":\"degraded\"" });

        Assert.False(result.Ok);
        Assert.Equal("body mismatch: does not contain \"\"status\":\"degraded\"\"", result.Reason);
    }

    [Fact]
    public async Task Http_Fails_WithBodyMismatch_WhenThePatternDoesNotMatch()
    {
        var result = await ProbeTesting.RunOnceAsync(Http(server.Url("/body")) with { BodyMatches = "\"version\":\"2\\." });

        Assert.False(result.Ok);
        Assert.StartsWith("body mismatch: does not match /", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http_TimesOut_OnTheInjectedClock_WhenTheServerDoesNotAnswer()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var probe = ProbeTesting.Create(Http(server.Url("/slow")) with { Timeout = TimeSpan.FromSeconds(5) }, time);

        var run = probe.RunAsync(CancellationToken.None).AsTask();
        await server.SlowRequestArrived.Task.DefaultTimeout();
        Assert.False(run.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(5));
        var result = await run.DefaultTimeout();

        Assert.False(result.Ok);
        Assert.Equal("timed out after 5 s waiting for the response", result.Reason);
        Assert.Equal(5000, result.LatencyMs);
        ((IDisposable)probe).Dispose();
    }

    [Fact]
    public async Task Http_Fails_WithConnectionRefused_WhenNothingListens()
    {
        var result = await ProbeTesting.RunOnceAsync(Http(new Uri($"http://127.0.0.1:{ProbeTesting.ClosedPort()}/api/health")));

        Assert.False(result.Ok);
        Assert.Equal("connection refused", result.Reason);
    }

    [Fact]
    public async Task Http_Fails_WithATlsError_ForAnUntrustedCertificate_AndPassesWhenVerificationIsSkipped()
    {
        await using var tls = new TlsTestServer(TestCertificates.ExpiringIn(TimeSpan.FromDays(90)));
        var url = new Uri($"https://127.0.0.1:{tls.Port}/api/health");

        var verified = await ProbeTesting.RunOnceAsync(Http(url));
        var skipped = await ProbeTesting.RunOnceAsync(Http(url) with { SkipTlsVerification = true });

        Assert.False(verified.Ok);
        Assert.StartsWith("TLS error:", verified.Reason, StringComparison.Ordinal);
        Assert.True(skipped.Ok, skipped.Reason);
    }

    [Fact]
    public async Task Http_Target_LeavesOutCredentialsAndQuery()
    {
        var probe = ProbeTesting.Create(Http(new Uri($"http://user:hunter2@127.0.0.1:{server.Port}/ok?token=abc123")));

        var result = await probe.RunAsync(CancellationToken.None).AsTask().DefaultTimeout();

        Assert.Equal($"http://127.0.0.1:{server.Port}/ok", probe.Target);
        Assert.Equal(probe.Target, result.Target);
        Assert.DoesNotContain("hunter2", result.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("abc123", result.ToString(), StringComparison.Ordinal);
        ((IDisposable)probe).Dispose();
    }
}
