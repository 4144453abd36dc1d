using Fleet.Cli.Metrics;
using Fleet.Cli.Output;

namespace Fleet.Cli.Tests.Metrics;

public sealed class MetricsFormattingTests
{
    [Fact]
    public void Sparkline_maps_the_minimum_to_the_lowest_block_and_the_maximum_to_the_highest()
    {
        Assert.Equal("▁▂▃▄▅▆▇█", Sparkline.Render([0, 1, 2, 3, 4, 5, 6, 7], 60));
        Assert.Equal("█▁▅", Sparkline.Render([70, 0, 40], 60));
        Assert.Equal("▁▁█", Sparkline.Render([0.5, 0.5, 0.9], 60));
    }

    [Fact]
    public void Sparkline_of_a_flat_series_is_the_lowest_block()
    {
        Assert.Equal("▁▁▁", Sparkline.Render([0.3, 0.3, 0.3], 60));
        Assert.Equal("▁", Sparkline.Render([42], 60));
        Assert.Equal("", Sparkline.Render([], 60));
    }

    [Fact]
    public void Sparkline_shows_values_that_are_not_numbers_as_gaps()
    {
        Assert.Equal("▁ █", Sparkline.Render([1, double.NaN, 2], 60));
        Assert.Equal("  ", Sparkline.Render([double.NaN, double.PositiveInfinity], 60));
    }

    [Fact]
    public void Sparkline_downsamples_to_the_width_by_averaging_neighbours()
    {
        Assert.Equal([0.5, 2.5, 4.5, 6.5], Sparkline.Downsample([0, 1, 2, 3, 4, 5, 6, 7], 4));
        Assert.Equal("▁▃▆█", Sparkline.Render([0, 1, 2, 3, 4, 5, 6, 7], 4));
        // Uneven buckets still cover every value exactly once: [0], [1], [2, 3].
        Assert.Equal([0, 1, 2.5], Sparkline.Downsample([0, 1, 2, 3], 3));
        Assert.Equal(7, Sparkline.Render([.. Enumerable.Range(0, 100).Select(i => (double)i)], 7).Length);
    }

    [Theory]
    [InlineData(0, "0%")]
    [InlineData(0.42, "42%")]
    [InlineData(0.894, "89%")]
    [InlineData(0.895, "90%!")]
    [InlineData(0.9, "90%!")]
    [InlineData(1, "100%!")]
    public void Top_percentages_are_whole_and_marked_from_90(double ratio, string expected) =>
        Assert.Equal(expected, MetricsCommands.Percent(ratio));

    [Theory]
    [InlineData("cpu.usage", 0.425, "42.5%")]
    [InlineData("disk.used_ratio", 0.9, "90%")]
    [InlineData("memory.used_bytes", 512, "512 B")]
    [InlineData("memory.total_bytes", 17_179_869_184, "16 GiB")]
    [InlineData("memory.used_bytes", 1_610_612_736, "1.5 GiB")]
    [InlineData("network.rx_bytes_per_second", 2048, "2 KiB/s")]
    [InlineData("load.1m", 1.234, "1.23")]
    [InlineData("disk.stuck", 1, "1")]
    public void History_values_are_shown_in_the_metrics_unit(string name, double value, string expected) =>
        Assert.Equal(expected, MetricsCommands.Value(name, value));
}
