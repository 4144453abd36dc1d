using Fleet.Agent.Collectors;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Collectors;

public sealed class CollectorRegistryTests
{
    [Fact]
    public void Every_built_in_collector_is_created_by_its_name()
    {
        using var directory = new TempDirectory();
        var settings = new CollectorSettings { Processes = ["sshd"], TextfileDirectory = directory.Path };

        Assert.Equal(["cpu", "disk", "load", "memory", "network", "process", "textfile"], CollectorRegistry.Default.Names);
        foreach (var name in CollectorRegistry.Default.Names)
        {
            Assert.Equal(name, CollectorRegistry.Default.Create(name, settings).Name);
        }
    }

    [Fact]
    public void An_unknown_name_is_refused_naming_it_and_the_known_ones()
    {
        var error = Assert.Throws<ArgumentException>(() => CollectorRegistry.Default.Create("gpu", new CollectorSettings()));

        Assert.Contains("'gpu'", error.Message, StringComparison.Ordinal);
        Assert.Contains("cpu, disk, load, memory, network, process, textfile", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_registry_holds_only_what_it_was_given()
    {
        var registry = new CollectorRegistry([new("load", settings => new LoadCollector(settings))]);

        Assert.Equal(["load"], registry.Names);
        Assert.Throws<ArgumentException>(() => registry.Create("cpu", new CollectorSettings()));
    }
}
