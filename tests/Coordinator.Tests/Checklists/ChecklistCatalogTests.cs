using Fleet.Coordinator.Checklists;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Testing;

namespace Fleet.Coordinator.Tests.Checklists;

public sealed class ChecklistCatalogTests
{
    [Fact]
    public void DeployFile_HoldsTheRunbooksChecklists()
    {
        var catalog = ChecklistCatalog.Load(Path.Combine(RepoPaths.Root, "deploy", "checklists.yaml"));

        Assert.Equal([5, 5, 6, 6], CalendarPeriod.Kinds.Select(k => catalog.Of(k).Count()));
        Assert.Equal(["health.check"], catalog.Find("check-system-health")!.Tasks);
        Assert.Equal(["logs.scan"], catalog.Find("review-error-logs")!.Tasks);
        Assert.Equal(["system.resources"], catalog.Find("monitor-resource-usage")!.Tasks);
        Assert.False(catalog.Find("security-penetration-test")!.Automatic);
        Assert.Equal(PeriodKind.Quarterly, catalog.Find("compliance-audit")!.Kind);
        Assert.Equal(PeriodKind.Monthly, catalog.Find("disaster-recovery-test")!.Kind);
    }

    [Fact]
    public void DeployFile_ReachesTheOutputDirectory_WhereTheDefaultSettingLooks()
    {
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "checklists.yaml"), new ChecklistsOptions().ResolvedFile);
        Assert.True(File.Exists(new ChecklistsOptions().ResolvedFile));
    }

    [Theory]
    [InlineData("items:\n  - { id: a, title: A, period: daily }\n  - { id: b, title: B, period: hourly }\n", "item 'b' (#2): period 'hourly' is not one of daily, weekly, monthly, quarterly")]
    [InlineData("items:\n  - { id: a, title: A, period: daily }\n  - { id: a, title: B, period: weekly }\n", "item 'a' (#2): duplicate id (also item #1)")]
    [InlineData("items:\n  - { id: Bad_Id, title: A, period: daily }\n", "item 'Bad_Id' (#1): id must be")]
    [InlineData("items:\n  - { id: a, period: daily }\n", "item 'a' (#1): title is required")]
    [InlineData("items:\n  - { id: a, title: A, period: daily, tasks: ['bad task'] }\n", "item 'a' (#1): task 'bad task' is not a task name")]
    [InlineData("items:\n  - { id: a, title: A, period: daily, taks: [x] }\n", "line 2")]
    [InlineData("# nothing\n", "no items")]
    public void BadDefinitions_AreRejected_NamingTheItem(string yaml, string expected)
    {
        var error = Assert.Throws<ChecklistDefinitionException>(() => ChecklistCatalog.Parse(yaml, "test.yaml"));
        Assert.Contains(expected, error.Message);
        Assert.StartsWith("test.yaml: ", error.Message);
    }

    [Theory]
    [InlineData("items:\n  - { id: weekly-thing, title: A, period: fortnightly }\n", "weekly-thing")]
    [InlineData("items:\n  - { id: twice, title: A, period: daily }\n  - { id: twice, title: A, period: daily }\n", "twice")]
    [InlineData(null, "cannot be read")]
    public void BadDefinitionFile_StopsTheCoordinator_NamingTheSettingAndItem(string? yaml, string expected)
    {
        var error = CoordinatorFactory.StartFailure(() =>
        {
            var coordinator = new CoordinatorFactory(Store.Sqlite);
            var path = Path.Combine(coordinator.DataDirectory, "checklists.yaml");
            if (yaml is not null) File.WriteAllText(path, yaml);
            return coordinator.With("Fleet:Checklists:File", path);
        });
        var messages = string.Join(" | ", Flatten(error).Select(e => e.Message));
        Assert.Contains("Fleet:Checklists:File", messages);
        Assert.Contains(expected, messages);
    }

    static IEnumerable<Exception> Flatten(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            yield return x;
            if (x is AggregateException agg)
                foreach (var inner in agg.InnerExceptions.SelectMany(Flatten))
                    yield return inner;
        }
    }
}
