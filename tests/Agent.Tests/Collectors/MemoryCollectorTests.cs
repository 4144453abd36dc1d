using Fleet.Agent.Collectors;

namespace Fleet.Agent.Tests.Collectors;

public sealed class MemoryCollectorTests : IDisposable
{
    private readonly FakeProc _proc = new();

    public void Dispose() => _proc.Dispose();

    [Fact]
    public async Task Meminfo_kilobytes_are_reported_in_bytes_with_used_from_available()
    {
        _proc.Write("meminfo", """
            MemTotal:       16000000 kB
            MemFree:         2000000 kB
            MemAvailable:   12000000 kB
            Buffers:          100000 kB
            Cached:          9000000 kB
            SwapCached:            0 kB
            Active(anon):     154428 kB
            SwapTotal:       4000000 kB
            SwapFree:        3000000 kB
            HugePages_Total:       0
            Hugepagesize:       2048 kB
            """);

        var memory = await new MemoryCollector(_proc.Settings).CollectAsync();

        Assert.Equal(16_000_000.0 * 1024, memory.Value("memory.total_bytes"));
        Assert.Equal(12_000_000.0 * 1024, memory.Value("memory.available_bytes"));
        Assert.Equal(4_000_000.0 * 1024, memory.Value("memory.used_bytes"));
        Assert.Equal(0.25, memory.Value("memory.used_ratio"), 12);
        Assert.Equal(9_000_000.0 * 1024, memory.Value("memory.cached_bytes"));
        Assert.Equal(4_000_000.0 * 1024, memory.Value("memory.swap_total_bytes"));
        Assert.Equal(1_000_000.0 * 1024, memory.Value("memory.swap_used_bytes"));
        Assert.Equal(7, memory.Samples.Count);
    }

    [Fact]
    public async Task Kernels_without_MemAvailable_count_free_buffers_and_cache_as_available()
    {
        _proc.Write("meminfo", """
            MemTotal:        1000 kB
            MemFree:          200 kB
            Buffers:          100 kB
            Cached:           300 kB
            SwapTotal:          0 kB
            SwapFree:           0 kB
            """);

        var memory = await new MemoryCollector(_proc.Settings).CollectAsync();

        Assert.Equal(600.0 * 1024, memory.Value("memory.available_bytes"));
        Assert.Equal(400.0 * 1024, memory.Value("memory.used_bytes"));
        Assert.Equal(0.4, memory.Value("memory.used_ratio"), 12);
        Assert.Equal(0, memory.Value("memory.swap_used_bytes"));
    }

    [Fact]
    public async Task Meminfo_without_MemTotal_is_an_error()
    {
        _proc.Write("meminfo", "MemFree: 200 kB\n");

        await Assert.ThrowsAsync<InvalidDataException>(() => new MemoryCollector(_proc.Settings).CollectAsync());
    }
}
