using Fleet.Agent.Probes;

namespace Fleet.Agent.Tests.Probes;

public sealed class TlsProbeTests
{
    static ProbeSettings Tls(string address, bool acceptSelfSigned = true) => new()
    {
        Name = "site-cert",
        Kind = ProbeKinds.Tls,
        Address = address,
        SkipTlsVerification = acceptSelfSigned,
    };

    [Fact]
    public async Task Tls_ReportsDaysLeft_AndFails_WhenTheCertificateExpiresWithinWarnDays()
    {
        await using var server = new TlsTestServer(TestCertificates.ExpiringIn(TimeSpan.FromDays(3)));

        var result = await ProbeTesting.RunOnceAsync(Tls(server.Address) with { WarnDays = 14 });

        Assert.False(result.Ok);
        Assert.InRange(result.Values["tls.days_left"], 2.99, 3.0);
        Assert.StartsWith("certificate expires in 3 days", result.Reason, StringComparison.Ordinal);
        Assert.Contains("fewer than 14", result.Reason, StringComparison.Ordinal);
        Assert.Contains("subject CN=fleet-probe-test, O=Fleet Tests", result.Reason, StringComparison.Ordinal);
        Assert.Contains("issuer CN=fleet-probe-test, O=Fleet Tests", result.Reason, StringComparison.Ordinal);
        Assert.True(result.LatencyMs > 0);
    }

    [Fact]
    public async Task Tls_IsOk_WhenTheCertificateHasMoreThanWarnDaysLeft()
    {
        await using var server = new TlsTestServer(TestCertificates.ExpiringIn(TimeSpan.FromDays(60)));

        var result = await ProbeTesting.RunOnceAsync(Tls(server.Address));

        Assert.True(result.Ok, result.Reason);
        Assert.Equal(server.Address, result.Target);
        Assert.InRange(result.Values["tls.days_left"], 59.99, 60.0);
    }

    [Fact]
    public async Task Tls_Fails_WhenTheCertificateHasExpired()
    {
        var now = DateTimeOffset.UtcNow;
        await using var server = new TlsTestServer(TestCertificates.SelfSigned(now.AddDays(-30), now.AddDays(-2)));

        var result = await ProbeTesting.RunOnceAsync(Tls(server.Address));

        Assert.False(result.Ok);
        Assert.InRange(result.Values["tls.days_left"], -2.01, -1.99);
        Assert.StartsWith("certificate expired 2 days ago", result.Reason, StringComparison.Ordinal);
        Assert.Contains("subject CN=fleet-probe-test", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tls_Fails_ForAnUntrustedCertificate_NamingSubjectAndIssuer_WhenVerificationIsOn()
    {
        await using var server = new TlsTestServer(TestCertificates.ExpiringIn(TimeSpan.FromDays(60)));

        var result = await ProbeTesting.RunOnceAsync(Tls(server.Address, acceptSelfSigned: false));

        Assert.False(result.Ok);
        Assert.StartsWith("certificate not trusted for 127.0.0.1: chain errors (", result.Reason, StringComparison.Ordinal);
        Assert.Contains("UntrustedRoot", result.Reason, StringComparison.Ordinal);
        Assert.Contains("subject CN=fleet-probe-test, O=Fleet Tests, issuer CN=fleet-probe-test, O=Fleet Tests", result.Reason, StringComparison.Ordinal);
        Assert.InRange(result.Values["tls.days_left"], 59.99, 60.0);
    }

    [Fact]
    public async Task Tls_Fails_WhenTheHandshakeFails()
    {
        await using var server = new SilentServer("HTTP/1.1 400 Bad Request\r\n\r\n"u8.ToArray());

        var result = await ProbeTesting.RunOnceAsync(Tls(server.Address));

        Assert.False(result.Ok);
        Assert.StartsWith("TLS handshake failed:", result.Reason, StringComparison.Ordinal);
        Assert.Empty(result.Values);
    }

    [Fact]
    public async Task Tls_Fails_WithConnectionRefused_WhenNothingListens()
    {
        var result = await ProbeTesting.RunOnceAsync(Tls($"127.0.0.1:{ProbeTesting.ClosedPort()}"));

        Assert.False(result.Ok);
        Assert.Equal("connection refused", result.Reason);
    }
}
