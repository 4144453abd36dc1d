using System.Globalization;
using Fleet.Agent.Collectors;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Collectors;

/// <summary>Each collector once against this machine's /proc (and statvfs), checked against what the kernel says.</summary>
public sealed class LiveSystemTests
{
    private static readonly CollectorSettings Live = new();

    [Fact]
    public async Task Memory_total_is_MemTotal_in_bytes()
    {
        var memTotalKib = File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];

        var memory = await CollectorRegistry.Default.Create("memory", Live).CollectAsync();

        Assert.Equal(double.Parse(memTotalKib, CultureInfo.InvariantCulture) * 1024, memory.Value("memory.total_bytes"));
        Assert.InRange(memory.Value("memory.used_ratio"), 0, 1);
        Assert.InRange(memory.Value("memory.available_bytes"), 1, memory.Value("memory.total_bytes"));
    }

    [Fact]
    public async Task Cpu_usage_is_a_ratio_for_the_machine_and_every_core_after_two_collections()
    {
        var cpu = CollectorRegistry.Default.Create("cpu", Live);
        var first = await cpu.CollectAsync();

        // A core's counters only move every clock tick, so collect until the machine's have.
        var later = await Eventually.UntilAsync(() => cpu.CollectAsync(), w => w.Find("cpu.usage") is not null, "cpu counters to move");

        Assert.Empty(first.Samples);
        foreach (var sample in later.Samples) Assert.InRange(sample.Value, 0, 1);
        var cores = File.ReadLines("/proc/stat").Count(l => l.StartsWith("cpu", StringComparison.Ordinal) && char.IsAsciiDigit(l[3]));
        Assert.InRange(later.Named("cpu.usage").Count(s => s.Labels.ContainsKey("cpu")), 0, cores);
        Assert.Single(later.Named("cpu.user"));
    }

    [Fact]
    public async Task Disk_reports_the_root_file_system_through_libc_statvfs()
    {
        var disk = await CollectorRegistry.Default.Create("disk", Live).CollectAsync();

        var root = Assert.Single(disk.Named("disk.size_bytes"), s => s.Labels["mount"] == "/");
        Assert.Equal(new DriveInfo("/").TotalSize, root.Value);
        Assert.All(disk.Named("disk.used_ratio"), s => Assert.InRange(s.Value, 0, 1));
        Assert.All(disk.Named("disk.stuck"), s => Assert.Equal(0, s.Value));
        Assert.DoesNotContain(disk.Samples, s => s.Labels["fstype"] is "proc" or "sysfs" or "tmpfs" or "cgroup" or "cgroup2");
    }

    [Fact]
    public void Statvfs_of_a_missing_path_is_null()
    {
        Assert.Null(StatVfs.Query("/no/such/path/" + Guid.NewGuid()));
    }

    [Fact]
    public async Task Load_reports_averages_and_task_counts()
    {
        var load = await CollectorRegistry.Default.Create("load", Live).CollectAsync();

        Assert.All(load.Samples, s => Assert.InRange(s.Value, 0, 10_000_000));
        Assert.InRange(load.Value("load.running"), 1, load.Value("load.processes")); // this test is running
        Assert.Equal(5, load.Samples.Count);
    }

    [Fact]
    public async Task Network_reports_non_negative_rates_for_every_interface_but_loopback()
    {
        var interfaces = File.ReadLines("/proc/net/dev").Skip(2).Select(l => l.Split(':')[0].Trim()).Where(n => n != "lo").ToHashSet();
        var network = CollectorRegistry.Default.Create("network", Live);
        var first = await network.CollectAsync(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 1000);

        var second = await network.CollectAsync(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

        Assert.Empty(first.Samples);
        Assert.All(second.Samples, s => Assert.InRange(s.Value, 0, double.MaxValue));
        Assert.All(second.Samples, s => Assert.Contains(s.Labels["interface"], interfaces));
        Assert.Equal(interfaces.Count * 8, second.Samples.Count);
    }

    [Fact]
    public async Task Process_finds_this_test_process()
    {
        var stat = File.ReadAllText("/proc/self/stat");
        var comm = stat[(stat.IndexOf('(', StringComparison.Ordinal) + 1)..stat.LastIndexOf(')')];
        var process = CollectorRegistry.Default.Create("process", new CollectorSettings { Processes = [comm, "/no-such-process-[0-9]{9}/"] });
        var time = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await process.CollectAsync(time - 10_000);

        var samples = await process.CollectAsync(time);

        Assert.InRange(samples.Value("process.count", ("process", comm)), 1, 100_000);
        Assert.Equal(1, samples.Value("process.up", ("process", comm)));
        Assert.InRange(samples.Value("process.rss_bytes", ("process", comm)), Environment.WorkingSet / 2.0, double.MaxValue);
        Assert.InRange(samples.Value("process.uptime_seconds", ("process", comm)), 0, 1_000_000_000);
        Assert.InRange(samples.Value("process.cpu_ratio", ("process", comm)), 0, Environment.ProcessorCount);
        Assert.Equal(0, samples.Value("process.up", ("process", "/no-such-process-[0-9]{9}/")));
    }
}
