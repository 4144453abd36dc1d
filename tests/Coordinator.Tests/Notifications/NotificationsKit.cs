using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Notifications;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Coordinator.Tests.Notifications;

/// <summary>One request a <see cref="StubReceiver"/> got: when (stopwatch), headers and body.</summary>
sealed record ReceivedRequest(TimeSpan At, string Path, IReadOnlyDictionary<string, string> Headers, string Body, int AnsweredWith)
{
    public JsonElement Json => JsonDocument.Parse(Body).RootElement;
}

/// <summary>
/// A local HTTP receiver standing in for Slack or a webhook (HttpListener on a free loopback port): records every
/// request and answers what <see cref="Answer"/> says for the n-th request (status, Retry-After seconds).
/// </summary>
sealed class StubReceiver : IDisposable
{
    readonly HttpListener listener = new();
    readonly Stopwatch clock = Stopwatch.StartNew();
    readonly ConcurrentQueue<ReceivedRequest> requests = new();
    int count;

    public StubReceiver()
    {
        Port = FreePort.Next();
        listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        listener.Start();
        _ = Task.Run(LoopAsync);
    }

    public int Port { get; }
    public string Url(string path = "hook") => $"http://127.0.0.1:{Port}/{path}";

    /// <summary>(request number from 1) → (status, Retry-After seconds or null). Default: 200.</summary>
    public Func<int, (int Status, int? RetryAfter)> Answer { get; set; } = _ => (200, null);

    public IReadOnlyList<ReceivedRequest> Requests => requests.ToList();
    public IReadOnlyList<ReceivedRequest> Accepted => requests.Where(r => r.AnsweredWith is >= 200 and < 300).ToList();

    async Task LoopAsync()
    {
        while (listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await listener.GetContextAsync(); }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException) { return; }
            var at = clock.Elapsed;
            using var reader = new StreamReader(context.Request.InputStream, Encoding.UTF8);
            var body = await reader.ReadToEndAsync();
            var headers = context.Request.Headers.AllKeys.Where(k => k is not null).ToDictionary(k => k!, k => context.Request.Headers[k]!, StringComparer.OrdinalIgnoreCase);
            var (status, retryAfter) = Answer(Interlocked.Increment(ref count));
            requests.Enqueue(new ReceivedRequest(at, context.Request.Url!.AbsolutePath, headers, body, status));
            context.Response.StatusCode = status;
            if (retryAfter is { } s) context.Response.Headers["Retry-After"] = s.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var answer = Encoding.UTF8.GetBytes(status == 200 ? "ok" : $"rate_limited at {context.Request.Url!.AbsolutePath}"); // an error page quoting the URL
            await context.Response.OutputStream.WriteAsync(answer);
            context.Response.Close();
        }
    }

    public void Dispose()
    {
        listener.Stop();
        listener.Close();
    }
}

/// <summary>maildev's REST API: the emails it received.</summary>
static class MailDev
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public static async Task<List<JsonElement>> EmailsAsync(string subjectContains)
    {
        var json = await Http.GetStringAsync(TestServices.MailDevApi.TrimEnd('/') + "/api/email");
        return JsonDocument.Parse(json).RootElement.EnumerateArray()
            .Where(e => e.GetProperty("subject").GetString()!.Contains(subjectContains, StringComparison.Ordinal)).ToList();
    }
}

/// <summary>A coordinator with the fan-out configured, and helpers that write alert transitions the way AlertStore does.</summary>
static class NotificationsKit
{
    static long ruleIds = 900_000 + Random.Shared.Next(0, 1_000_000) * 10L;

    /// <summary>Fast retries for tests: base 100 ms, max 1 s, 3 attempts, sweeps at least every 500 ms, no group wait.</summary>
    public static CoordinatorFactory Coordinator(Store store, string? postgres = null, bool rabbit = false, string? queue = null)
    {
        var f = new CoordinatorFactory(store, postgres)
            .With("Fleet:Alerts:DefaultRules", "false")
            .With("Fleet:Notifications:RetryBase", "00:00:00.100")
            .With("Fleet:Notifications:RetryMax", "00:00:01")
            .With("Fleet:Notifications:MaxAttempts", "3")
            .With("Fleet:Notifications:SendTimeout", "00:00:05")
            .With("Fleet:Notifications:Lease", "00:00:10")
            .With("Fleet:Notifications:SweepInterval", "00:00:00.500")
            .With("Fleet:Notifications:GroupWait", "00:00:00"); // tests of grouping set their own
        if (rabbit)
            f.With("ConnectionStrings:RabbitMq", TestServices.RabbitMq)
             .With("Fleet:Notifications:Queue", queue ?? TestServices.UniqueName("fleet-notifications"));
        return f;
    }

    public static CoordinatorFactory Slack(this CoordinatorFactory f, string name, string url, string channel = "#ops") =>
        f.With($"Fleet:Notifications:Receivers:{name}:Kind", "slack").With($"Fleet:Notifications:Receivers:{name}:Url", url)
         .With($"Fleet:Notifications:Receivers:{name}:Channel", channel);

    public static CoordinatorFactory Webhook(this CoordinatorFactory f, string name, string url, string secret) =>
        f.With($"Fleet:Notifications:Receivers:{name}:Kind", "webhook").With($"Fleet:Notifications:Receivers:{name}:Url", url)
         .With($"Fleet:Notifications:Receivers:{name}:Secret", secret);

    public static CoordinatorFactory Email(this CoordinatorFactory f, string name, string to)
    {
        var smtp = TestServices.Smtp.Split(':');
        return f.With($"Fleet:Notifications:Receivers:{name}:Kind", "email")
            .With($"Fleet:Notifications:Receivers:{name}:Host", smtp[0]).With($"Fleet:Notifications:Receivers:{name}:Port", smtp[1])
            .With($"Fleet:Notifications:Receivers:{name}:Security", "none")
            .With($"Fleet:Notifications:Receivers:{name}:From", "fleet@example.test")
            .With($"Fleet:Notifications:Receivers:{name}:To:0", to);
    }

    /// <summary>A route of every alert to <paramref name="receivers"/> (route number <paramref name="index"/>).</summary>
    public static CoordinatorFactory Route(this CoordinatorFactory f, int index, params string[] receivers)
    {
        for (var i = 0; i < receivers.Length; i++) f.With($"Fleet:Notifications:Routes:{index}:Receivers:{i}", receivers[i]);
        return f;
    }

    public static FleetDbContext Db(this CoordinatorFactory f) =>
        f.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();

    /// <summary>Writes a transition row (as AlertStore does) and wakes the router.</summary>
    public static async Task<AlertTransitionRecord> TransitionAsync(this CoordinatorFactory f, string rule, string kind, string host,
        double value = 0.93, long? ruleId = null, long episode = 1)
    {
        var labels = new Dictionary<string, string> { ["host"] = host, ["mount"] = "/" };
        var row = new AlertTransitionRecord
        {
            RuleId = ruleId ?? Interlocked.Increment(ref ruleIds), RuleName = rule, Fingerprint = AlertLabels.Fingerprint(labels), Episode = episode,
            Kind = kind, Severity = "critical", Value = value, Time = DateTime.UtcNow, LabelsJson = AlertLabels.Json(labels),
            AnnotationsJson = AlertLabels.Json(new Dictionary<string, string>
            {
                ["summary"] = $"Disk / on {host} is {value:P0} full", ["runbook"] = "https://runbook.example/disk-full",
                ["value"] = value.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture), ["threshold"] = "0.8",
            }),
        };
        await using (var db = f.Db())
        {
            db.Set<AlertTransitionRecord>().Add(row);
            await db.SaveChangesAsync();
        }
        f.Services.GetRequiredService<AlertTransitions>().Wake();
        return row;
    }

    public static async Task<List<NotificationRecord>> NotificationsAsync(this CoordinatorFactory f)
    {
        await using var db = f.Db();
        return await db.Set<NotificationRecord>().AsNoTracking().OrderBy(n => n.Id).ToListAsync();
    }
}
