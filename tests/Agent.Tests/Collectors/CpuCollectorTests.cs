using System.Globalization;
using System.Text;
using Fleet.Agent.Collectors;

namespace Fleet.Agent.Tests.Collectors;

public sealed class CpuCollectorTests : IDisposable
{
    // user nice system idle iowait irq softirq steal guest guest_nice, and the lines that follow the cpu lines
    private const string Before = """
        cpu  100 0 50 800 10 0 0 0 0 0
        cpu0 50 0 25 400 5 0 0 0 0 0
        cpu1 50 0 25 400 5 0 0 0 0 0
        intr 7218307 0 0 0
        ctxt 72252235
        btime 1764350000
        """;

    private readonly FakeProc _proc = new();

    public void Dispose() => _proc.Dispose();

    [Fact]
    public async Task First_collection_only_primes()
    {
        _proc.Write("stat", Before);
        var cpu = new CpuCollector(_proc.Settings);

        var first = await cpu.CollectAsync();

        Assert.Empty(first.Samples);
    }

    [Fact]
    public async Task Ratios_are_deltas_of_proc_stat_between_two_collections()
    {
        _proc.Write("stat", Before);
        var cpu = new CpuCollector(_proc.Settings);
        await cpu.CollectAsync();
        // total deltas: user 60, nice 20, system 20, idle 100, iowait 10, irq 5, softirq 5, steal 20 (240 in all);
        // guest columns are inside user already and are ignored.
        // cpu0: user 30, nice 10, system 10, idle 50, iowait 5, irq 5, steal 10 (120); cpu1: user 30, idle 50, nothing else (80).
        _proc.Write("stat", """
            cpu  160 20 70 900 20 5 5 20 7 0
            cpu0 80 10 35 450 10 5 0 10 7 0
            cpu1 80 0 25 450 5 0 0 0 0 0
            intr 7218400 0 0 0
            """);

        var second = await cpu.CollectAsync();

        Assert.Equal(130.0 / 240, second.Value("cpu.usage"), 12);
        Assert.Equal(80.0 / 240, second.Value("cpu.user"), 12);
        Assert.Equal(30.0 / 240, second.Value("cpu.system"), 12);
        Assert.Equal(10.0 / 240, second.Value("cpu.iowait"), 12);
        Assert.Equal(20.0 / 240, second.Value("cpu.steal"), 12);
        Assert.Equal(65.0 / 120, second.Value("cpu.usage", ("cpu", "0")), 12);
        Assert.Equal(30.0 / 80, second.Value("cpu.usage", ("cpu", "1")), 12);
        Assert.Equal(7, second.Samples.Count);
    }

    [Fact]
    public async Task A_core_whose_counters_went_backwards_gets_no_sample_for_that_interval_and_is_measured_again_after()
    {
        _proc.Write("stat", Before);
        var cpu = new CpuCollector(_proc.Settings);
        await cpu.CollectAsync();
        // cpu1's user counter went back (VM migrated to another host); cpu0 and the total moved on normally.
        _proc.Write("stat", """
            cpu  160 0 50 900 10 0 0 0 0 0
            cpu0 110 0 25 450 5 0 0 0 0 0
            cpu1 10 0 25 450 5 0 0 0 0 0
            """);

        var second = await cpu.CollectAsync();

        Assert.Null(second.Find("cpu.usage", ("cpu", "1")));
        Assert.Equal(60.0 / 110, second.Value("cpu.usage", ("cpu", "0")), 12);
        Assert.Equal(60.0 / 160, second.Value("cpu.usage"), 12);

        _proc.Write("stat", """
            cpu  180 0 50 1000 10 0 0 0 0 0
            cpu0 120 0 25 500 5 0 0 0 0 0
            cpu1 20 0 25 500 5 0 0 0 0 0
            """);
        var third = await cpu.CollectAsync();

        Assert.Equal(10.0 / 60, third.Value("cpu.usage", ("cpu", "1")), 12);
    }

    [Fact]
    public async Task Totals_that_went_backwards_give_no_machine_samples_never_negative_ones()
    {
        _proc.Write("stat", Before);
        var cpu = new CpuCollector(_proc.Settings);
        await cpu.CollectAsync();
        _proc.Write("stat", """
            cpu  10 0 5 80 1 0 0 0 0 0
            cpu0 5 0 2 40 0 0 0 0 0 0
            cpu1 5 0 3 40 1 0 0 0 0 0
            """);

        var second = await cpu.CollectAsync();

        Assert.Empty(second.Samples);
    }

    [Fact]
    public async Task Iowait_alone_going_backwards_counts_as_zero_iowait()
    {
        // The kernel documents that iowait can decrease on idle cores; that alone must not drop the sample.
        _proc.Write("stat", Before);
        var cpu = new CpuCollector(_proc.Settings);
        await cpu.CollectAsync();
        _proc.Write("stat", """
            cpu  130 0 50 870 8 0 0 0 0 0
            cpu0 65 0 25 435 4 0 0 0 0 0
            cpu1 65 0 25 435 4 0 0 0 0 0
            """);

        var second = await cpu.CollectAsync();

        Assert.Equal(30.0 / 100, second.Value("cpu.usage"), 12);
        Assert.Equal(0, second.Value("cpu.iowait"));
        Assert.Equal(15.0 / 50, second.Value("cpu.usage", ("cpu", "0")), 12);
    }

    [Fact]
    public async Task A_core_that_comes_online_starts_at_its_second_sample_and_one_that_goes_offline_is_dropped()
    {
        _proc.Write("stat", Before);
        var cpu = new CpuCollector(_proc.Settings);
        await cpu.CollectAsync();
        // cpu1 went offline, cpu2 came online.
        _proc.Write("stat", """
            cpu  150 0 50 850 10 0 0 0 0 0
            cpu0 100 0 25 450 5 0 0 0 0 0
            cpu2 0 0 0 10 0 0 0 0 0 0
            """);

        var second = await cpu.CollectAsync();

        Assert.Null(second.Find("cpu.usage", ("cpu", "1")));
        Assert.Null(second.Find("cpu.usage", ("cpu", "2")));
        Assert.Equal(0.5, second.Value("cpu.usage", ("cpu", "0")), 12);

        _proc.Write("stat", """
            cpu  200 0 50 900 10 0 0 0 0 0
            cpu0 100 0 25 500 5 0 0 0 0 0
            cpu2 50 0 0 10 0 0 0 0 0 0
            cpu1 70 0 25 400 5 0 0 0 0 0
            """);
        var third = await cpu.CollectAsync();

        Assert.Equal(1.0, third.Value("cpu.usage", ("cpu", "2")), 12);
        Assert.Equal(0.0, third.Value("cpu.usage", ("cpu", "0")), 12);
        Assert.Null(third.Find("cpu.usage", ("cpu", "1"))); // back online: primes again
    }

    [Fact]
    public async Task All_128_cores_are_reported_each_with_its_own_ratio()
    {
        const int cores = 128;
        _proc.Write("stat", Stat(cores, i => (0, 0)));
        var cpu = new CpuCollector(_proc.Settings);
        await cpu.CollectAsync();
        // core i: i ticks busy, 128 - i idle, so its usage is i / 128; the machine is (0 + ... + 127) / (128 * 128).
        _proc.Write("stat", Stat(cores, i => (i, cores - i)));

        var second = await cpu.CollectAsync();

        var perCore = second.Named("cpu.usage").Where(s => s.Labels.ContainsKey("cpu")).ToList();
        Assert.Equal(cores, perCore.Count);
        for (var i = 0; i < cores; i++)
        {
            Assert.Equal((double)i / cores, second.Value("cpu.usage", ("cpu", i.ToString(CultureInfo.InvariantCulture))), 12);
        }
        Assert.Equal(cores * (cores - 1) / 2.0 / (cores * cores), second.Value("cpu.usage"), 12);
    }

    [Fact]
    public async Task Older_kernels_with_fewer_columns_are_read()
    {
        _proc.Write("stat", "cpu  100 0 50 850\ncpu0 100 0 50 850\n");
        var cpu = new CpuCollector(_proc.Settings);
        await cpu.CollectAsync();
        _proc.Write("stat", "cpu  150 0 50 900\ncpu0 150 0 50 900\n");

        var second = await cpu.CollectAsync();

        Assert.Equal(0.5, second.Value("cpu.usage"), 12);
        Assert.Equal(0, second.Value("cpu.steal"));
    }

    private static string Stat(int cores, Func<int, (int Busy, int Idle)> core)
    {
        var text = new StringBuilder();
        long busyTotal = 0, idleTotal = 0;
        var lines = new StringBuilder();
        for (var i = 0; i < cores; i++)
        {
            var (busy, idle) = core(i);
            busyTotal += busy;
            idleTotal += idle;
            lines.Append(CultureInfo.InvariantCulture, $"cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0\n");
        }
        text.Append(CultureInfo.InvariantCulture, $"cpu  {busyTotal} 0 0 {idleTotal} 0 0 0 0 0 0\n").Append(lines).Append("intr 1 0 0\n");
        return text.ToString();
    }
}
