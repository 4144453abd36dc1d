using System.Net;
using System.Net.Sockets;

namespace Fleet.Testing;

/// <summary>Free loopback TCP ports for processes under test (never 5080/5081).</summary>
public static class FreePort
{
    public static int Next()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
