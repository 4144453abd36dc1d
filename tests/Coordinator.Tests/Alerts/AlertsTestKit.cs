using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Coordinator.Tests.Alerts;

/// <summary>A coordinator on a fake clock with no default rules (each test creates the rules it needs), and helpers to drive it.</summary>
sealed class AlertsHarness : IAsyncDisposable
{
    public FakeTimeProvider Time { get; }
    public CoordinatorFactory Coordinator { get; }
    readonly List<RawAgentStream> streams = [];
    ulong counter;

    public AlertsHarness(Store store, string? postgres, bool defaultRules = false, FakeTimeProvider? time = null, IReadOnlyDictionary<string, string>? settings = null)
    {
        Time = time ?? new FakeTimeProvider(new DateTimeOffset(DateTime.UtcNow.Date.AddHours(12), TimeSpan.Zero));
        var coordinator = new CoordinatorFactory(store, store == Store.Postgres ? postgres : null)
            .With("Fleet:Alerts:DefaultRules", defaultRules ? "true" : "false")
            .With("Fleet:Alerts:EvaluationInterval", "00:10:00")
            .With("Fleet:Agents:HeartbeatTimeout", "1.00:00:00") // the fake clock jumps minutes; the test streams send no heartbeats
            .With("Fleet:Schedules:RunScheduler", "false") // tests that need occurrences write them (the fake clock would fire real ones)
            .WithTime(Time);
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) coordinator = coordinator.With(key, value);
        Coordinator = coordinator;
        _ = Coordinator.Server; // start it
    }

    public DateTime Now => Time.GetUtcNow().UtcDateTime;
    public AlertEngine Engine => Coordinator.Services.GetRequiredService<AlertEngine>();
    public AlertRemediation Remediation => Coordinator.Services.GetRequiredService<AlertRemediation>();
    public Protocol.V1.Alerts.AlertsClient Alerts(string user = "alice") => new(Coordinator.Channel(user));
    public Protocol.V1.Rules.RulesClient Rules(string user = "alice") => new(Coordinator.Channel(user));
    public Protocol.V1.Silences.SilencesClient Silences(string user = "alice") => new(Coordinator.Channel(user));
    public FleetDbContext Db() => Coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();

    public async Task<Rule> RuleAsync(string yaml) => await Rules().CreateRuleAsync(new CreateRuleRequest { Yaml = yaml });

    public async Task<RawAgentStream> AgentAsync(string id, string hostname, params TaskDescriptor[] tasks)
    {
        var stream = RawAgentStream.Open(Coordinator.Channel());
        var hello = RawAgentStream.Hello(id, hostname);
        hello.Tasks.Add(tasks);
        await stream.HelloAsync(hello);
        streams.Add(stream);
        return stream;
    }

    public async Task SendAsync(RawAgentStream stream, Batch batch)
    {
        batch.Key = new BatchKey { Epoch = 42, Counter = ++counter };
        await stream.SendAsync(new AgentMessage { Batch = batch });
        var reply = await stream.ReceiveAsync();
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, reply.BodyCase);
    }

    public Task SampleAsync(RawAgentStream stream, string name, double value, params (string, string)[] labels) =>
        SendAsync(stream, Metrics(Sample(name, value, Now, labels)));

    public static MetricSample Sample(string name, double value, DateTime time, params (string, string)[] labels)
    {
        var s = new MetricSample { Name = name, Value = value, TimeUnixMs = new DateTimeOffset(time).ToUnixTimeMilliseconds() };
        foreach (var (k, v) in labels) s.Labels[k] = v;
        return s;
    }

    public static Batch Metrics(params MetricSample[] samples) => new() { Metrics = new MetricBatch { Samples = { samples } } };

    public async Task<List<AlertTransitionRecord>> TransitionsAsync(string rule)
    {
        await using var db = Db();
        return await db.Set<AlertTransitionRecord>().AsNoTracking().Where(t => t.RuleName == rule).OrderBy(t => t.Id).ToListAsync();
    }

    public async Task<List<AlertRecord>> AlertsAsync(string rule)
    {
        await using var db = Db();
        return await db.Set<AlertRecord>().AsNoTracking().Where(a => a.RuleName == rule).OrderBy(a => a.Id).ToListAsync();
    }

    /// <summary>Waits until the rule's alerts satisfy <paramref name="done"/> (evaluation after ingest is asynchronous).</summary>
    public Task<List<AlertRecord>> WaitAsync(string rule, Func<List<AlertRecord>, bool> done, string what) =>
        Eventually.UntilAsync(() => AlertsAsync(rule), done, what);

    public static string Kinds(IEnumerable<AlertTransitionRecord> transitions) => string.Join(",", transitions.Select(t => t.Kind));

    public async ValueTask DisposeAsync()
    {
        foreach (var s in streams) await s.DisposeAsync();
        await Coordinator.DisposeAsync();
    }
}
