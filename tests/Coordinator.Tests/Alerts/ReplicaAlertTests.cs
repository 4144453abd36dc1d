using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Coordinator.Tests.Alerts;

public sealed class ReplicaAlertTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task TwoEvaluators_OnOneDatabase_CreateEachTransitionExactlyOnce()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(DateTime.UtcNow.Date.AddHours(12), TimeSpan.Zero));
        await using var a = new AlertsHarness(Store.Postgres, postgres.ConnectionString, time: time);
        await using var b = new AlertsHarness(Store.Postgres, postgres.ConnectionString, time: time);
        await a.RuleAsync("""
            name: load
            kind: threshold
            severity: critical
            expr: load.1m > 4
            clear: 3
            """);
        await a.RuleAsync("""
            name: watchdog
            kind: watchdog
            severity: info
            """);
        await b.Engine.TickAsync(default); // b learns the rules

        // The same data reaches both evaluators at once (as when each replica sees the same series).
        var batches = Enumerable.Range(0, 40)
            .Select(i => ($"agent-r{i:00}", AlertsHarness.Metrics(AlertsHarness.Sample("load.1m", 9, time.GetUtcNow().UtcDateTime))))
            .ToList();
        for (var round = 0; round < 3; round++)
            await Task.WhenAll(a.Engine.EvaluateBatchesAsync(batches, default), b.Engine.EvaluateBatchesAsync(batches, default),
                a.Engine.TickAsync(default), b.Engine.TickAsync(default));

        var fired = await a.TransitionsAsync("load");
        Assert.Equal(40, fired.Count);
        Assert.All(fired, t => Assert.Equal(AlertTransitionKinds.Firing, t.Kind));
        Assert.Equal(40, fired.Select(t => t.Fingerprint).Distinct().Count());
        Assert.Equal("firing", AlertsHarness.Kinds(await a.TransitionsAsync("watchdog")));

        time.Advance(TimeSpan.FromMinutes(1));
        var low = batches.Select(x => (x.Item1, AlertsHarness.Metrics(AlertsHarness.Sample("load.1m", 1, time.GetUtcNow().UtcDateTime)))).ToList();
        await Task.WhenAll(a.Engine.EvaluateBatchesAsync(low, default), b.Engine.EvaluateBatchesAsync(low, default));
        await Task.WhenAll(a.Engine.EvaluateBatchesAsync(low, default), b.Engine.EvaluateBatchesAsync(low, default));
        var all = await a.TransitionsAsync("load");
        Assert.Equal(40, all.Count(t => t.Kind == AlertTransitionKinds.Resolved));
        Assert.Equal(80, all.Count);
        Assert.All(await a.AlertsAsync("load"), x => Assert.Equal((AlertStates.Resolved, 1L), (x.State, x.Episode)));
    }

    [Fact]
    public async Task TransitionRow_IsUniqueOnRuleFingerprintEpisodeKind()
    {
        await using var h = new AlertsHarness(Store.Postgres, postgres.ConnectionString);
        AlertTransitionRecord Row() => new()
        {
            RuleId = 999, RuleName = "x", Fingerprint = "0123456789abcdef", Episode = 1, Kind = AlertTransitionKinds.Firing, Severity = "info", Time = h.Now,
        };
        await using (var db = h.Db())
        {
            db.Add(Row());
            await db.SaveChangesAsync();
        }
        await using (var db = h.Db())
        {
            db.Add(Row());
            await Assert.ThrowsAsync<DbUpdateException>(() => db.SaveChangesAsync());
        }
    }
}
