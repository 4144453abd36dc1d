using Fleet.Agent.Collectors;

namespace Fleet.Agent.Tests.Collectors;

public sealed class NetworkCollectorTests : IDisposable
{
    private const string Header = """
        Inter-|   Receive                                                |  Transmit
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed

        """;

    private const long T0 = 1_700_000_000_000;

    private readonly FakeProc _proc = new();

    public void Dispose() => _proc.Dispose();

    [Fact]
    public async Task Rates_are_counter_deltas_over_the_time_between_collections_and_loopback_is_skipped()
    {
        _proc.Write("net/dev", Header + """
                lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0
              eth0: 1000000 1000 1 2 0 0 0 0 500000 800 3 4 0 0 0 0
              eth1:4294967000 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0
            """);
        var network = new NetworkCollector(_proc.Settings);
        var first = await network.CollectAsync(T0);
        // 10 s later: eth0 received 50 000 bytes, 100 packets, 1 error, 3 drops; sent 20 000 bytes, 40 packets, 2 errors, 0 drops.
        _proc.Write("net/dev", Header + """
                lo: 9000 90 0 0 0 0 0 0 9000 90 0 0 0 0 0 0
              eth0: 1050000 1100 2 5 0 0 0 0 520000 840 5 4 0 0 0 0
              eth1:4294968000 15 0 0 0 0 0 0 100 1 0 0 0 0 0 0
            """);

        var second = await network.CollectAsync(T0 + 10_000);

        Assert.Empty(first.Samples);
        Assert.Equal(5000, second.Value("network.rx_bytes_per_second", ("interface", "eth0")));
        Assert.Equal(2000, second.Value("network.tx_bytes_per_second", ("interface", "eth0")));
        Assert.Equal(10, second.Value("network.rx_packets_per_second", ("interface", "eth0")));
        Assert.Equal(4, second.Value("network.tx_packets_per_second", ("interface", "eth0")));
        Assert.Equal(0.1, second.Value("network.rx_errors_per_second", ("interface", "eth0")), 12);
        Assert.Equal(0.2, second.Value("network.tx_errors_per_second", ("interface", "eth0")), 12);
        Assert.Equal(0.3, second.Value("network.rx_drops_per_second", ("interface", "eth0")), 12);
        Assert.Equal(0, second.Value("network.tx_drops_per_second", ("interface", "eth0")));
        Assert.Equal(100, second.Value("network.rx_bytes_per_second", ("interface", "eth1")));
        Assert.Equal(1, second.Value("network.rx_packets_per_second", ("interface", "eth1")));
        Assert.DoesNotContain(second.Samples, s => s.Labels["interface"] == "lo");
        Assert.Equal(16, second.Samples.Count);
    }

    [Fact]
    public async Task An_interface_that_appears_between_collections_starts_at_its_second_sample()
    {
        _proc.Write("net/dev", Header + "  eth0: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n");
        var network = new NetworkCollector(_proc.Settings);
        await network.CollectAsync(T0);
        _proc.Write("net/dev", Header + """
              eth0: 3000 30 0 0 0 0 0 0 1000 10 0 0 0 0 0 0
            wg0: 500 5 0 0 0 0 0 0 700 7 0 0 0 0 0 0
            """);

        var second = await network.CollectAsync(T0 + 2_000);

        Assert.Equal(1000, second.Value("network.rx_bytes_per_second", ("interface", "eth0")));
        Assert.DoesNotContain(second.Samples, s => s.Labels["interface"] == "wg0");

        _proc.Write("net/dev", Header + """
              eth0: 3000 30 0 0 0 0 0 0 1000 10 0 0 0 0 0 0
            wg0: 4500 45 0 0 0 0 0 0 700 7 0 0 0 0 0 0
            """);
        var third = await network.CollectAsync(T0 + 4_000);

        Assert.Equal(2000, third.Value("network.rx_bytes_per_second", ("interface", "wg0")));
        Assert.Equal(0, third.Value("network.tx_bytes_per_second", ("interface", "wg0")));
    }

    [Fact]
    public async Task An_interface_whose_counters_went_backwards_gets_no_sample_for_that_interval()
    {
        _proc.Write("net/dev", Header + """
              eth0: 1000000 1000 0 0 0 0 0 0 500000 800 0 0 0 0 0 0
              eth1: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0
            """);
        var network = new NetworkCollector(_proc.Settings);
        await network.CollectAsync(T0);
        // eth0's driver was reset; eth1 carried on.
        _proc.Write("net/dev", Header + """
              eth0: 2000 2 0 0 0 0 0 0 1000 1 0 0 0 0 0 0
              eth1: 2000 20 0 0 0 0 0 0 1000 10 0 0 0 0 0 0
            """);

        var second = await network.CollectAsync(T0 + 1_000);

        Assert.DoesNotContain(second.Samples, s => s.Labels["interface"] == "eth0");
        Assert.Equal(1000, second.Value("network.rx_bytes_per_second", ("interface", "eth1")));

        _proc.Write("net/dev", Header + """
              eth0: 4000 4 0 0 0 0 0 0 1000 1 0 0 0 0 0 0
              eth1: 2000 20 0 0 0 0 0 0 1000 10 0 0 0 0 0 0
            """);
        var third = await network.CollectAsync(T0 + 2_000);

        Assert.Equal(2000, third.Value("network.rx_bytes_per_second", ("interface", "eth0")));
        Assert.True(second.Samples.Concat(third.Samples).All(s => s.Value >= 0));
    }

    [Fact]
    public async Task A_collection_stamped_no_later_than_the_previous_gives_no_rates()
    {
        _proc.Write("net/dev", Header + "  eth0: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n");
        var network = new NetworkCollector(_proc.Settings);
        await network.CollectAsync(T0);
        _proc.Write("net/dev", Header + "  eth0: 2000 20 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n");

        var second = await network.CollectAsync(T0 - 5_000); // wall clock stepped back

        Assert.Empty(second.Samples);
    }
}
