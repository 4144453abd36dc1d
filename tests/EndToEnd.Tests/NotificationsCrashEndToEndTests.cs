using System.Collections.Concurrent;
using System.Net;
using Fleet.EndToEnd.Tests.Infrastructure;
using Fleet.Testing;
using Npgsql;

namespace Fleet.EndToEnd.Tests;

/// <summary>
/// A real coordinator process on PostgreSQL and RabbitMQ, killed (SIGKILL, by its crash point) after an alert transition
/// committed, after a notification was claimed, and after it was marked sent; restarted, each notification reaches the
/// webhook exactly once. (The one window where a receiver can get a message twice, a crash after it accepted the message
/// and before the sent mark commits, is the claimed case seen from the receiver's side: there the first request never
/// got its answer, see docs/operator-guide.md.)
/// </summary>
public sealed class NotificationsCrashEndToEndTests : IAsyncLifetime
{
    readonly PostgresDatabase postgres = new();
    readonly TempDirectory directory = new();

    public Task InitializeAsync() => postgres.InitializeAsync();

    public async Task DisposeAsync()
    {
        await postgres.DisposeAsync();
        directory.Dispose();
    }

    /// <summary>Records every POST; answers 200 (or holds nothing back: the crash happens inside the coordinator).</summary>
    sealed class Hook : IDisposable
    {
        readonly HttpListener listener = new();
        public ConcurrentQueue<(string Key, string Body)> Requests { get; } = new();
        public int Port { get; } = FreePort.Next();

        public Hook()
        {
            listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            listener.Start();
            _ = Task.Run(async () =>
            {
                while (listener.IsListening)
                {
                    HttpListenerContext context;
                    try { context = await listener.GetContextAsync(); }
                    catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException) { return; }
                    using var reader = new StreamReader(context.Request.InputStream);
                    Requests.Enqueue((context.Request.Headers["Idempotency-Key"] ?? "", await reader.ReadToEndAsync()));
                    context.Response.StatusCode = 200;
                    context.Response.Close();
                }
            });
        }

        public void Dispose() => listener.Close();
    }

    async Task<List<(long Id, string State, int Attempts)>> NotificationsAsync()
    {
        await using var connection = new NpgsqlConnection(postgres.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""SELECT "Id", "State", "Attempts" FROM notifications ORDER BY "Id" """, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<(long, string, int)>();
        while (await reader.ReadAsync()) rows.Add((reader.GetInt64(0), reader.GetString(1), reader.GetInt32(2)));
        return rows;
    }

    [Theory]
    [InlineData("alert.transition", 1)]     // committed, not routed: routed after the restart
    [InlineData("notification.claimed", 2)] // claimed, not sent: sent once the lease expired
    [InlineData("notification.sent", 1)]    // sent and marked: never sent again
    public async Task CoordinatorKilled_AtEachStepOfTheOutbox_TheWebhookGetsTheNotificationOnce(string crashPoint, int attempts)
    {
        using var hook = new Hook();
        // Launched, not started: the watchdog fires on the first evaluation, so the crash point may come before the
        // coordinator ever answers a readiness probe.
        var coordinator = CoordinatorProcess.Launch(new()
        {
            ["ConnectionStrings:Postgres"] = postgres.ConnectionString,
            ["ConnectionStrings:Redis"] = TestServices.Redis,
            ["ConnectionStrings:RabbitMq"] = TestServices.RabbitMq,
            ["Fleet:Redis:KeyPrefix"] = TestServices.UniqueName("e2e") + ":",
            ["Fleet:DataDirectory"] = directory.Combine("coordinator"),
            ["Fleet:Schedules:LoadDefaults"] = "false",
            ["Fleet:Alerts:EvaluationInterval"] = "00:00:01",
            ["Fleet:Notifications:Queue"] = TestServices.UniqueName("e2e-notifications"),
            ["Fleet:Notifications:Lease"] = "00:00:04",
            ["Fleet:Notifications:SendTimeout"] = "00:00:02",
            ["Fleet:Notifications:SweepInterval"] = "00:00:00.500",
            ["Fleet:Notifications:GroupWait"] = "00:00:00",
            ["Fleet:Notifications:Receivers:hook:Kind"] = "webhook",
            ["Fleet:Notifications:Receivers:hook:Url"] = $"http://127.0.0.1:{hook.Port}/hook",
            ["Fleet:Notifications:Receivers:hook:Secret"] = "s3cret",
            // The default watchdog rule fires on the first evaluation: that is the alert.
            ["Fleet:Notifications:Routes:0:Matchers:0"] = "alertname=watchdog",
            ["Fleet:Notifications:Routes:0:Receivers:0"] = "hook",
            ["FLEET_CRASH_AT"] = crashPoint,
        }, directory.Path);
        await using (coordinator)
        {
            var output = await coordinator.WaitForExitAsync(TimeSpan.FromSeconds(60));
            Assert.Contains($"FLEET_CRASH_AT={crashPoint}: killing this process now", output);
            var before = hook.Requests.Count;
            coordinator.Settings.Remove("FLEET_CRASH_AT");
            await coordinator.StartAsync();

            var rows = await Eventually.UntilAsync(NotificationsAsync, r => r.Count == 1 && r[0].State == "sent", "the watchdog's notification sent",
                TimeSpan.FromSeconds(60));
            Assert.Equal(crashPoint == "notification.sent" ? 1 : 0, before);
            Assert.Equal(attempts, rows[0].Attempts);
            Assert.Equal([rows[0].Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], hook.Requests.Select(r => r.Key));
            Assert.Contains("\"alert\":\"watchdog\"", hook.Requests.Single().Body);
        }
    }
}
