using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Coordinator.Tests.Alerts;

/// <summary>Shipped rules added in a later version reach existing installations once; what the operator did stays.</summary>
public sealed class DefaultRulesUpgradeTests
{
    [Fact]
    public async Task AnInstallationFromTheFirstRelease_GetsTheNewDefaultRulesOnce_AndKeepsItsDeletionsAndItsOwnRules()
    {
        var database = new PostgresDatabase();
        await database.InitializeAsync();
        try
        {
            // The first release's state: its single marker, its rules minus one the operator deleted, and an operator's
            // own rule under a name a later version ships.
            await using (var old = new AlertsHarness(Store.Postgres, database.ConnectionString))
            {
                await using var db = old.Db();
                var shipped = new DefaultRules(null!, Microsoft.Extensions.Options.Options.Create(new AlertsOptions()), TimeProvider.System,
                    Microsoft.Extensions.Logging.Abstractions.NullLogger<DefaultRules>.Instance).Parse();
                db.Set<AlertRuleDefaultsMarker>().Add(new AlertRuleDefaultsMarker { Key = DefaultRules.LegacyMarkerKey, LoadedAt = old.Now, Count = 11 });
                foreach (var rule in shipped.Where(r => DefaultRules.FirstSet.Contains(r.Name) && r.Name != "load-high"))
                    db.Set<AlertRuleRecord>().Add(new AlertRuleRecord
                    {
                        Name = rule.Name, Kind = rule.Kind, Severity = rule.Severity, DefinitionJson = RuleCompiler.ToJson(rule),
                        DefaultRule = true, CreatedAt = old.Now, UpdatedAt = old.Now,
                    });
                await db.SaveChangesAsync();
                await old.RuleAsync("""
                    name: tls-expiring
                    kind: watchdog
                    severity: info
                    """);
            }

            string[] afterUpgrade;
            await using (var upgraded = new AlertsHarness(Store.Postgres, database.ConnectionString, defaultRules: true))
            {
                var rules = await Eventually.UntilAsync(async () => (await upgraded.Rules().ListRulesAsync(new ListRulesRequest())).Rules,
                    r => r.Any(x => x.Name == "window-missed"), "the new default rules");
                afterUpgrade = [.. rules.Select(r => r.Name).Order()];
                Assert.DoesNotContain("load-high", afterUpgrade);
                Assert.Contains("checklist-missed", afterUpgrade);
                Assert.Contains("notification-dead", afterUpgrade);
                var mine = rules.Single(r => r.Name == "tls-expiring");
                Assert.Equal(("watchdog", false), (mine.Kind, mine.DefaultRule));
                Assert.Equal(DefaultRules.FirstSet.Count - 1 + 4, rules.Count);
                await upgraded.Rules().DeleteRuleAsync(new DeleteRuleRequest { Name = "window-missed" });
            }

            // Restarted: nothing comes back, nothing is added twice.
            await using var restarted = new AlertsHarness(Store.Postgres, database.ConnectionString, defaultRules: true);
            Assert.False(await restarted.Coordinator.Services.GetRequiredService<DefaultRules>().EnsureLoadedAsync(default));
            var names = (await restarted.Rules().ListRulesAsync(new ListRulesRequest())).Rules.Select(r => r.Name).Order().ToArray();
            Assert.Equal(afterUpgrade.Where(n => n != "window-missed"), names);
        }
        finally
        {
            await database.DisposeAsync();
        }
    }

    [Fact]
    public async Task AnInstallationWhoseLegacyMarkerCountsFifteen_HadAllFifteenOffered_AndGetsNoDeletedRuleBack()
    {
        var database = new PostgresDatabase();
        await database.InitializeAsync();
        try
        {
            await using var h = new AlertsHarness(Store.Postgres, database.ConnectionString);
            var defaults = h.Coordinator.Services.GetRequiredService<DefaultRules>();
            await using (var db = h.Db())
            {
                db.Set<AlertRuleDefaultsMarker>().Add(new AlertRuleDefaultsMarker { Key = DefaultRules.LegacyMarkerKey, LoadedAt = h.Now, Count = 15 });
                foreach (var rule in defaults.Parse().Where(r => r.Name != "window-missed"))
                    db.Set<AlertRuleRecord>().Add(new AlertRuleRecord
                    {
                        Name = rule.Name, Kind = rule.Kind, Severity = rule.Severity, DefinitionJson = RuleCompiler.ToJson(rule),
                        DefaultRule = true, CreatedAt = h.Now, UpdatedAt = h.Now,
                    });
                await db.SaveChangesAsync();
            }

            Assert.False(await defaults.EnsureLoadedAsync(default));
            var names = (await h.Rules().ListRulesAsync(new ListRulesRequest())).Rules.Select(r => r.Name).ToList();
            Assert.DoesNotContain("window-missed", names);
            Assert.Equal(DefaultRules.SecondSet.Count - 1, names.Count);
        }
        finally
        {
            await database.DisposeAsync();
        }
    }
}
