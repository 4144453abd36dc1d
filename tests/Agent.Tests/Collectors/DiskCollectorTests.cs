using System.Collections.Concurrent;
using System.Diagnostics;
using Fleet.Agent.Collectors;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Collectors;

public sealed class DiskCollectorTests : IDisposable
{
    private const string Mounts = """
        proc /proc proc rw,relatime 0 0
        sysfs /sys sysfs rw,relatime 0 0
        devtmpfs /dev devtmpfs rw,relatime,size=12334432k 0 0
        tmpfs /dev/shm tmpfs rw,relatime 0 0
        devpts /dev/pts devpts rw,relatime,mode=600 0 0
        /dev/vda / ext4 rw,relatime 0 0
        cgroup2 /sys/fs/cgroup cgroup2 rw,relatime 0 0
        cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
        /dev/vdb /data xfs rw,relatime 0 0
        overlay /var/lib/docker/overlay2/abc/merged overlay rw,lowerdir=/x 0 0
        /dev/loop0 /snap/core/123 squashfs ro,nodev 0 0
        nsfs /run/netns/blue nsfs rw 0 0
        systemd-1 /mnt/auto autofs rw 0 0
        nas:/export /mnt/nas nfs4 rw,relatime,vers=4.2 0 0
        /dev/vdc /mnt/my\040disk ext4 rw 0 0
        """;

    private readonly FakeProc _proc = new();
    private readonly SemaphoreSlim _nasGate = new(0);

    public void Dispose()
    {
        _nasGate.Release(1000); // let a hung call return so no pool thread stays blocked
        _proc.Dispose();
    }

    [Fact]
    public async Task Real_mounts_are_reported_from_statvfs_and_pseudo_file_systems_are_skipped()
    {
        _proc.Write("self/mounts", Mounts);
        var disk = new DiskCollector(_proc.Settings, Healthy, TimeProvider.System);

        var samples = await disk.CollectAsync();

        var mounts = samples.Named("disk.size_bytes").Select(s => s.Labels["mount"]).Order(StringComparer.Ordinal);
        Assert.Equal(["/", "/data", "/mnt/my disk", "/mnt/nas"], mounts);
        var root = new[] { ("mount", "/"), ("device", "/dev/vda"), ("fstype", "ext4") };
        // 4 KiB fragments: 1000 blocks, 400 free to root, 300 available to users; 100 inodes, 25 free.
        Assert.Equal(4096.0 * 1000, samples.Value("disk.size_bytes", root));
        Assert.Equal(4096.0 * 600, samples.Value("disk.used_bytes", root));
        Assert.Equal(4096.0 * 300, samples.Value("disk.free_bytes", root));
        Assert.Equal(600.0 / 900, samples.Value("disk.used_ratio", root), 12);
        Assert.Equal(100, samples.Value("disk.inodes_total", root));
        Assert.Equal(0.75, samples.Value("disk.inodes_used_ratio", root));
        Assert.Equal(0, samples.Value("disk.stuck", root));
        Assert.Equal(1024.0 * 50, samples.Value("disk.size_bytes", ("mount", "/mnt/my disk"), ("device", "/dev/vdc"), ("fstype", "ext4")));
    }

    [Fact]
    public async Task A_file_system_without_inodes_gets_no_inode_ratio()
    {
        _proc.Write("self/mounts", "/dev/sda2 / btrfs rw 0 0\n");
        var disk = new DiskCollector(_proc.Settings, _ => new StatVfs(4096, 100, 50, 50, 0, 0), TimeProvider.System);

        var samples = await disk.CollectAsync();

        Assert.Equal(0, samples.Value("disk.inodes_total", ("mount", "/"), ("device", "/dev/sda2"), ("fstype", "btrfs")));
        Assert.Empty(samples.Named("disk.inodes_used_ratio"));
    }

    [Fact]
    public async Task Overlay_counts_only_as_the_root_file_system()
    {
        _proc.Write("self/mounts", """
            overlay / overlay rw,lowerdir=/a,upperdir=/b 0 0
            overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0
            """);
        var disk = new DiskCollector(_proc.Settings, Healthy, TimeProvider.System);

        var samples = await disk.CollectAsync();

        Assert.Equal(["/"], samples.Named("disk.size_bytes").Select(s => s.Labels["mount"]));
    }

    [Fact]
    public async Task A_mount_whose_statvfs_fails_is_left_out()
    {
        _proc.Write("self/mounts", Mounts);
        var disk = new DiskCollector(_proc.Settings, path => path == "/data" ? null : Healthy(path), TimeProvider.System);

        var samples = await disk.CollectAsync();

        Assert.DoesNotContain(samples.Samples, s => s.Labels["mount"] == "/data");
        Assert.Equal(3, samples.Named("disk.size_bytes").Count());
    }

    [Fact]
    public async Task A_hung_mount_is_reported_stuck_while_the_others_keep_reporting_and_is_not_called_again_until_it_returns()
    {
        _proc.Write("self/mounts", Mounts);
        var calls = new ConcurrentDictionary<string, int>();
        StatVfs? StatVfs(string path)
        {
            calls.AddOrUpdate(path, 1, (_, n) => n + 1);
            if (path == "/mnt/nas") _nasGate.Wait(); // the NFS server is gone
            return Healthy(path);
        }
        var settings = new CollectorSettings { ProcRoot = _proc.Root, Timeout = TimeSpan.FromSeconds(2) };
        var disk = new DiskCollector(settings, StatVfs, TimeProvider.System);
        var nas = new[] { ("mount", "/mnt/nas"), ("device", "nas:/export"), ("fstype", "nfs4") };

        var clock = Stopwatch.StartNew();
        var first = await disk.CollectAsync();
        var firstTook = clock.Elapsed;

        Assert.True(firstTook < settings.Timeout, $"the collection took {firstTook}, longer than its {settings.Timeout} timeout");
        Assert.Equal(1, first.Value("disk.stuck", nas));
        Assert.Null(first.Find("disk.size_bytes", nas));
        Assert.Equal(4096.0 * 1000, first.Value("disk.size_bytes", ("mount", "/"), ("device", "/dev/vda"), ("fstype", "ext4")));
        Assert.Equal(3, first.Named("disk.size_bytes").Count());

        clock.Restart();
        var second = await disk.CollectAsync();

        Assert.True(clock.Elapsed < disk.StatTimeout, $"a mount known to be stuck was waited for again ({clock.Elapsed})");
        Assert.Equal(1, second.Value("disk.stuck", nas));
        Assert.Equal(3, second.Named("disk.size_bytes").Count());
        Assert.Equal(1, calls["/mnt/nas"]);
        Assert.Equal(2, calls["/"]);

        _nasGate.Release(1000); // the server is back
        var recovered = await Eventually.UntilAsync(
            () => disk.CollectAsync(), s => s.Find("disk.stuck", nas)?.Value == 0, "the NAS mount to report again");

        Assert.Equal(4096.0 * 1000, recovered.Value("disk.size_bytes", nas));
        Assert.Equal(4, recovered.Named("disk.size_bytes").Count());
    }

    [Fact]
    public async Task Cancellation_ends_a_collection_that_waits_on_a_hung_mount()
    {
        _proc.Write("self/mounts", "nas:/export /mnt/nas nfs4 rw 0 0\n");
        var settings = new CollectorSettings { ProcRoot = _proc.Root, Timeout = TimeSpan.FromHours(1) };
        var disk = new DiskCollector(settings, path => { _nasGate.Wait(); return Healthy(path); }, TimeProvider.System);
        using var cts = new CancellationTokenSource();

        var collection = disk.CollectAsync(new MetricWriter(0), cts.Token).AsTask();
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => collection.DefaultTimeout());
    }

    [Fact]
    public void Octal_escapes_in_mount_points_are_decoded()
    {
        var mounts = DiskCollector.ReadMounts("/dev/sdb1 /media/a\\040b\\011c\\134d vfat rw 0 0\n/dev/sdb1 /media/a\\040b\\011c\\134d vfat rw 0 0\n");

        var mount = Assert.Single(mounts);
        Assert.Equal("/media/a b\tc\\d", mount.Point);
    }

    /// <summary>4 KiB fragments on /, /data and /mnt/nas; 1 KiB on the rest.</summary>
    private static StatVfs? Healthy(string path) => path switch
    {
        "/" or "/data" or "/mnt/nas" => new StatVfs(4096, 1000, 400, 300, 100, 25),
        _ => new StatVfs(1024, 50, 25, 25, 10, 5),
    };
}
