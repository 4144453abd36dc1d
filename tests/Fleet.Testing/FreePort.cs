using System.Net;
using System.Net.Sockets;

namespace Fleet.Testing;

/// <summary>
/// Free loopback TCP ports for processes under test, taken below the kernel's ephemeral range
/// (like deploy/test/services.sh does for the services): a port the kernel hands out for port 0
/// can be taken by any outgoing connection (a database pool opening one) between this check and
/// the child process binding it, which made a coordinator fail to start with "address already in use".
/// Never 5080/5081, never a port this process handed out before.
/// </summary>
public static class FreePort
{
    const int Low = 20000;
    static readonly object Gate = new();
    static readonly HashSet<int> Given = [];
    static readonly Random Pick = new(HashCode.Combine(Environment.ProcessId, Environment.TickCount64));

    public static int Next()
    {
        var high = EphemeralLow() - 1;
        lock (Gate)
        {
            for (var tried = 0; tried < 5000 && high > Low; tried++)
            {
                var port = Pick.Next(Low, high + 1);
                if (port is 5080 or 5081 || Given.Contains(port) || !CanBind(port)) continue;
                Given.Add(port);
                return port;
            }
        }
        using var listener = new TcpListener(IPAddress.Loopback, 0); // no free port below the range: the kernel's choice
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    static bool CanBind(int port)
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    static int EphemeralLow()
    {
        try
        {
            var first = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[0];
            // A range starting at or below Low leaves nothing to choose from below it: Next falls back to the kernel.
            return int.TryParse(first, out var low) ? Math.Min(low, 65536) : 32768;
        }
        catch (IOException)
        {
            return 32768;
        }
        catch (UnauthorizedAccessException)
        {
            return 32768;
        }
    }
}
