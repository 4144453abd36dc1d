using Fleet.Agent.Collectors;

namespace Fleet.Agent.Tests.Collectors;

public sealed class LoadCollectorTests : IDisposable
{
    private readonly FakeProc _proc = new();

    public void Dispose() => _proc.Dispose();

    [Fact]
    public async Task Loadavg_gives_the_three_averages_and_the_task_counts()
    {
        _proc.Write("loadavg", "3.21 2.30 13.05 3/219 21936\n");

        var load = await new LoadCollector(_proc.Settings).CollectAsync();

        Assert.Equal(3.21, load.Value("load.1m"));
        Assert.Equal(2.30, load.Value("load.5m"));
        Assert.Equal(13.05, load.Value("load.15m"));
        Assert.Equal(3, load.Value("load.running"));
        Assert.Equal(219, load.Value("load.processes"));
        Assert.Equal(5, load.Samples.Count);
    }

    [Fact]
    public async Task Unexpected_loadavg_content_is_an_error()
    {
        _proc.Write("loadavg", "3.21 2.30\n");

        await Assert.ThrowsAsync<InvalidDataException>(() => new LoadCollector(_proc.Settings).CollectAsync());
    }
}
