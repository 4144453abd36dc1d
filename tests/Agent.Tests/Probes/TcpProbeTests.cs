using System.Net;
using System.Net.Sockets;
using Fleet.Agent.Probes;

namespace Fleet.Agent.Tests.Probes;

public sealed class TcpProbeTests
{
    [Fact]
    public async Task Tcp_IsOk_WithLatency_WhenThePortIsOpen()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;

        var result = await ProbeTesting.RunOnceAsync(new ProbeSettings { Name = "ssh", Kind = ProbeKinds.Tcp, Address = $"127.0.0.1:{port}" });

        Assert.True(result.Ok, result.Reason);
        Assert.Equal($"127.0.0.1:{port}", result.Target);
        Assert.True(result.LatencyMs > 0);
    }

    [Fact]
    public async Task Tcp_Fails_WithConnectionRefused_WhenThePortIsClosed()
    {
        var port = ProbeTesting.ClosedPort();

        var result = await ProbeTesting.RunOnceAsync(new ProbeSettings { Name = "ssh", Kind = ProbeKinds.Tcp, Address = $"127.0.0.1:{port}" });

        Assert.False(result.Ok);
        Assert.Equal("connection refused", result.Reason);
    }

    [Fact]
    public async Task Tcp_Fails_NamingTheHostLookup_ForAnUnknownHost()
    {
        var result = await ProbeTesting.RunOnceAsync(new ProbeSettings { Name = "db", Kind = ProbeKinds.Tcp, Address = "no-such-host.invalid:5432" });

        Assert.False(result.Ok);
        Assert.StartsWith("host ", result.Reason, StringComparison.Ordinal);   // "host not found", or a DNS failure without a resolver
    }

    [Fact]
    public async Task Tcp_ConnectsToAnIPv6Literal()
    {
        using var listener = new TcpListener(IPAddress.IPv6Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;

        var result = await ProbeTesting.RunOnceAsync(new ProbeSettings { Name = "v6", Kind = ProbeKinds.Tcp, Address = $"[::1]:{port}" });

        Assert.True(result.Ok, result.Reason);
        Assert.Equal($"[::1]:{port}", result.Target);
    }
}
