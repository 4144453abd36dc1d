using System.Diagnostics;

namespace Fleet.Coordinator.Hosting;

/// <summary>
/// Crash points for the kill -9 tests: when the environment variable <c>FLEET_CRASH_AT</c> names a point, the process
/// kills itself (SIGKILL, as kill -9 would) when it reaches it. Unset (always, outside those tests) it does nothing.
/// </summary>
public static class CrashPoints
{
    public const string Variable = "FLEET_CRASH_AT";

    /// <summary>An alert transition committed, not yet routed; a notification claimed, not yet sent; sent and marked.</summary>
    public const string TransitionCommitted = "alert.transition", NotificationClaimed = "notification.claimed", NotificationSent = "notification.sent";

    static readonly string? Armed = Environment.GetEnvironmentVariable(Variable);

    public static void Reached(string point)
    {
        if (Armed is null || !string.Equals(Armed, point, StringComparison.Ordinal)) return;
        Console.Error.WriteLine($"{Variable}={point}: killing this process now");
        Console.Error.Flush();
        Process.GetCurrentProcess().Kill();
    }
}
