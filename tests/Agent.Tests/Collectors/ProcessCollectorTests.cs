using System.Globalization;
using Fleet.Agent.Collectors;

namespace Fleet.Agent.Tests.Collectors;

public sealed class ProcessCollectorTests : IDisposable
{
    private const long T0 = 1_700_000_000_000;
    private const int PageSize = 4096;

    private readonly FakeProc _proc = new();

    public void Dispose() => _proc.Dispose();

    [Fact]
    public async Task Processes_are_matched_by_name_path_long_name_or_pattern_and_counted_with_memory_and_uptime()
    {
        WriteProcesses();
        var collector = Collector("nginx", "/kafka\\.jar/", "systemd-journald", "/usr/lib/systemd/systemd-journald", "weird ) name", "/^kworker/", "redis-server");

        var samples = await collector.CollectAsync(T0);

        Assert.Equal(2, samples.Value("process.count", ("process", "nginx")));
        Assert.Equal(1, samples.Value("process.up", ("process", "nginx")));
        Assert.Equal((250.0 + 150) * PageSize, samples.Value("process.rss_bytes", ("process", "nginx")));
        Assert.Equal(5000 - 1000 / 100.0, samples.Value("process.uptime_seconds", ("process", "nginx")), 9); // the older of the two
        Assert.Equal(1, samples.Value("process.count", ("process", "/kafka\\.jar/")));
        Assert.Equal(1, samples.Value("process.count", ("process", "systemd-journald"))); // comm is cut to "systemd-journal"
        Assert.Equal(1, samples.Value("process.count", ("process", "/usr/lib/systemd/systemd-journald")));
        Assert.Equal(1, samples.Value("process.count", ("process", "weird ) name")));
        Assert.Equal(20.0 * PageSize, samples.Value("process.rss_bytes", ("process", "weird ) name")));
        Assert.Equal(1, samples.Value("process.count", ("process", "/^kworker/"))); // kernel thread: the pattern sees its name
        Assert.Empty(samples.Named("process.cpu_ratio")); // needs a second collection
    }

    [Fact]
    public async Task A_process_that_is_down_is_counted_zero_and_has_no_other_metrics()
    {
        WriteProcesses();
        var collector = Collector("redis-server", "nginx-exporter");

        var samples = await collector.CollectAsync(T0);

        Assert.Equal(0, samples.Value("process.count", ("process", "redis-server")));
        Assert.Equal(0, samples.Value("process.up", ("process", "redis-server")));
        Assert.Equal(1, samples.Value("process.count", ("process", "nginx-exporter")));
        Assert.Null(samples.Find("process.rss_bytes", ("process", "redis-server")));
        Assert.Null(samples.Find("process.uptime_seconds", ("process", "redis-server")));
        Assert.Equal(6, samples.Samples.Count); // count and up of both, rss and uptime of nginx-exporter (cpu needs a second collection)
    }

    [Fact]
    public async Task Cpu_ratio_is_the_matches_cpu_time_over_wall_time_and_a_reused_pid_starts_afresh()
    {
        WriteProcesses();
        var collector = Collector("nginx");
        await collector.CollectAsync(T0);
        // 10 s later: pid 100 used 200 + 100 ticks (3 s of CPU); pid 101 exited and its pid went to a new nginx
        // (started at 4900 s) that used 50 ticks, which cannot be told apart from its life before: counted from now on.
        _proc.Write("uptime", "5010.00 100.00\n");
        _proc.Write("100/stat", Stat(100, "nginx", utime: 300, stime: 150, start: 1000, rss: 260));
        _proc.Write("101/stat", Stat(101, "nginx", utime: 50, stime: 0, start: 490_000, rss: 100));

        var second = await collector.CollectAsync(T0 + 10_000);

        Assert.Equal(0.3, second.Value("process.cpu_ratio", ("process", "nginx")), 12);
        Assert.Equal(2, second.Value("process.count", ("process", "nginx")));
        Assert.Equal(5010 - 10.0, second.Value("process.uptime_seconds", ("process", "nginx")), 9);

        _proc.Write("101/stat", Stat(101, "nginx", utime: 150, stime: 0, start: 490_000, rss: 100));
        var third = await collector.CollectAsync(T0 + 20_000);

        Assert.Equal(0.1, third.Value("process.cpu_ratio", ("process", "nginx")), 12);
    }

    [Fact]
    public async Task Pid_directories_without_a_readable_stat_are_skipped()
    {
        WriteProcesses();
        Directory.CreateDirectory(Path.Combine(_proc.Root, "700")); // exited while the scan ran
        _proc.Write("800/stat", "garbage");

        var samples = await Collector("nginx").CollectAsync(T0);

        Assert.Equal(2, samples.Value("process.count", ("process", "nginx")));
    }

    [Fact]
    public void Stat_lines_with_parentheses_and_spaces_in_the_name_are_parsed()
    {
        Assert.True(ProcessCollector.TryParseStat(Stat(42, "a) (b c)", utime: 7, stime: 8, start: 9, rss: 10), out var fields));

        Assert.Equal(new ProcessCollector.StatFields("a) (b c)", 7, 8, 9, 10), fields);
    }

    [Fact]
    public void Settings_without_processes_or_with_a_bad_pattern_are_refused_naming_the_problem()
    {
        var none = Assert.Throws<ArgumentException>(() => CollectorRegistry.Default.Create("process", _proc.Settings));
        var bad = Assert.Throws<ArgumentException>(() =>
            CollectorRegistry.Default.Create("process", new CollectorSettings { ProcRoot = _proc.Root, Processes = ["/java (kafka/"] }));

        Assert.Contains("Processes", none.Message, StringComparison.Ordinal);
        Assert.Contains("/java (kafka/", bad.Message, StringComparison.Ordinal);
    }

    private ProcessCollector Collector(params string[] processes) =>
        new(new CollectorSettings { ProcRoot = _proc.Root, Processes = processes }, ticksPerSecond: 100, pageSize: PageSize);

    private void WriteProcesses()
    {
        _proc.Write("uptime", "5000.00 100.00\n");
        _proc.Write("sys/kernel/pid_max", "4194304\n");
        Process(100, "nginx", "nginx: master process /usr/sbin/nginx", utime: 100, stime: 50, start: 1000, rss: 250);
        Process(101, "nginx", "nginx: worker process", utime: 10, stime: 5, start: 1200, rss: 150);
        Process(150, "nginx-exporter", "/usr/bin/nginx-exporter\0--port\09113\0", utime: 1, stime: 1, start: 2000, rss: 30);
        Process(200, "weird ) name", "", utime: 1, stime: 1, start: 3000, rss: 20);
        Process(300, "java", "java\0-Xmx1g\0-jar\0/opt/kafka/libs/kafka.jar\0", utime: 1000, stime: 100, start: 1500, rss: 100_000);
        Process(400, "systemd-journal", "/usr/lib/systemd/systemd-journald\0", utime: 5, stime: 5, start: 200, rss: 2000);
        Process(500, "kworker/0:1", "", utime: 0, stime: 3, start: 100, rss: 0);
    }

    private void Process(int pid, string comm, string cmdline, ulong utime, ulong stime, ulong start, long rss)
    {
        _proc.Write($"{pid}/stat", Stat(pid, comm, utime, stime, start, rss));
        _proc.Write($"{pid}/comm", comm + "\n");
        _proc.Write($"{pid}/cmdline", cmdline);
    }

    private static string Stat(int pid, string comm, ulong utime, ulong stime, ulong start, long rss) => string.Create(CultureInfo.InvariantCulture,
        $"{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 1 0 {start} 12345678 {rss} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
}
