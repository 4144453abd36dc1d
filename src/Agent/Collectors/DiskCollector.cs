using System.Collections.Frozen;
using System.Text;

namespace Fleet.Agent.Collectors;

/// <summary>
/// "disk": space and inodes of every real mount in <c>/proc/self/mounts</c>, from statvfs(3), labelled <c>mount</c>,
/// <c>device</c> and <c>fstype</c>: <c>disk.size_bytes</c>, <c>disk.used_bytes</c> (size - free to root),
/// <c>disk.free_bytes</c> (available to unprivileged users), <c>disk.used_ratio</c> (used / (used + free), as df shows it),
/// <c>disk.inodes_total</c>, <c>disk.inodes_used_ratio</c> (when the file system has inodes), and <c>disk.stuck</c>
/// (0, or 1 for a mount whose statvfs call has not returned).
/// Pseudo file systems (proc, sysfs, tmpfs, cgroup, squashfs, ...) are skipped; overlay only counts when it is <c>/</c>.
/// <para>
/// statvfs on a network mount whose server is gone can block for minutes. Each call runs on a thread of its own (never a
/// pool thread, which a hung call would take from the rest of the agent), at most one per mount; the collector waits for them at most half the collector's timeout, reports a mount whose call
/// is still running as stuck, and does not call statvfs for it again until that call has returned.
/// </para>
/// </summary>
public sealed class DiskCollector : ICollector
{
    private static readonly FrozenSet<string> PseudoFileSystems = FrozenSet.Create(StringComparer.Ordinal,
    [
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs", "efivarfs",
        "fuse.gvfsd-fuse", "fuse.lxcfs", "fuse.portal", "fusectl", "hugetlbfs", "mqueue", "nsfs", "overlay", "proc",
        "pstore", "ramfs", "rootfs", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs",
        "nfsd", "devfs", "binder",
    ]);

    private readonly string _mountsPath;
    private readonly Func<string, StatVfs?> _statVfs;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, Task<StatVfs?>> _calls = new(StringComparer.Ordinal);

    public DiskCollector(CollectorSettings settings) : this(settings, StatVfs.Query, TimeProvider.System)
    {
    }

    /// <param name="settings">ProcRoot and Timeout are used.</param>
    /// <param name="statVfs">statvfs for a mount point; null when it fails. Tests pass one that blocks.</param>
    /// <param name="time">Clock of the wait for statvfs calls.</param>
    public DiskCollector(CollectorSettings settings, Func<string, StatVfs?> statVfs, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(statVfs);
        ArgumentNullException.ThrowIfNull(time);
        _mountsPath = Path.Combine(settings.ProcRoot, "self", "mounts");
        _statVfs = statVfs;
        _time = time;
        StatTimeout = settings.Timeout / 2;
    }

    public string Name => "disk";

    /// <summary>How long one collection waits for its statvfs calls.</summary>
    public TimeSpan StatTimeout { get; }

    public async ValueTask CollectAsync(MetricWriter writer, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var mounts = ReadMounts(ProcText.ReadFile(_mountsPath));

        var started = new List<(Mount Mount, Task<StatVfs?> Call)>(mounts.Count);
        var stuck = new List<Mount>();
        foreach (var mount in mounts)
        {
            if (_calls.TryGetValue(mount.Point, out var pending) && !pending.IsCompleted)
            {
                stuck.Add(mount);
                continue;
            }
            var point = mount.Point;
            // A thread of its own, not the pool's: hung calls must not starve the pool (and with it the agent).
            var call = Task.Factory.StartNew(() => Call(point), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            _calls[point] = call;
            started.Add((mount, call));
        }

        if (started.Count > 0)
        {
            var all = Task.WhenAll(started.Select(s => s.Call));
            try
            {
                await all.WaitAsync(StatTimeout, _time, cancellationToken);
            }
            catch (TimeoutException) when (!all.IsCompleted)
            {
                // reported below, per mount
            }
        }

        foreach (var (mount, call) in started)
        {
            if (!call.IsCompleted)
            {
                stuck.Add(mount);
                continue;
            }
            _calls.Remove(mount.Point);
            if (call.Result is { } stat) Write(writer, mount, stat);
        }
        foreach (var mount in stuck) writer.Add("disk.stuck", 1, mount.Labels);

        // Forget returned calls of mounts that are gone; a hung one is kept so a remount does not start a second.
        if (_calls.Count > mounts.Count)
        {
            foreach (var point in _calls.Where(c => c.Value.IsCompleted).Select(c => c.Key).ToList()) _calls.Remove(point);
        }
    }

    private StatVfs? Call(string point)
    {
        try
        {
            return _statVfs(point);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidOperationException or ArgumentException)
        {
            return null;
        }
    }

    private static void Write(MetricWriter writer, Mount mount, StatVfs stat)
    {
        var size = (double)stat.Blocks * stat.FragmentSize;
        var used = (double)(stat.Blocks - Math.Min(stat.Blocks, stat.BlocksFree)) * stat.FragmentSize;
        var free = (double)stat.BlocksAvailable * stat.FragmentSize;
        writer.Add("disk.size_bytes", size, mount.Labels);
        writer.Add("disk.used_bytes", used, mount.Labels);
        writer.Add("disk.free_bytes", free, mount.Labels);
        if (used + free > 0) writer.Add("disk.used_ratio", used / (used + free), mount.Labels);
        writer.Add("disk.inodes_total", stat.Files, mount.Labels);
        if (stat.Files > 0)
        {
            writer.Add("disk.inodes_used_ratio", (double)(stat.Files - Math.Min(stat.Files, stat.FilesFree)) / stat.Files, mount.Labels);
        }
        writer.Add("disk.stuck", 0, mount.Labels);
    }

    /// <summary>Real mounts, one per mount point (the last mount on a point is the visible one).</summary>
    internal static List<Mount> ReadMounts(string text)
    {
        var byPoint = new Dictionary<string, Mount>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var range in text.AsSpan().Split('\n'))
        {
            // "/dev/vda / ext4 rw,relatime 0 0"; spaces and the like in fields are octal escapes (\040).
            var rest = text.AsSpan(range);
            if (!ProcText.NextToken(ref rest, out var device)
                || !ProcText.NextToken(ref rest, out var point)
                || !ProcText.NextToken(ref rest, out var fsType))
            {
                continue;
            }
            var type = fsType.ToString();
            var mountPoint = Unescape(point);
            if (PseudoFileSystems.Contains(type) && !(type == "overlay" && mountPoint == "/")) continue;
            if (type.StartsWith("cgroup", StringComparison.Ordinal)) continue;

            if (!byPoint.ContainsKey(mountPoint)) order.Add(mountPoint);
            byPoint[mountPoint] = new Mount(mountPoint, Unescape(device), type);
        }
        return [.. order.Select(p => byPoint[p])];
    }

    private static string Unescape(ReadOnlySpan<char> field)
    {
        if (field.IndexOf('\\') < 0) return field.ToString();
        var text = new StringBuilder(field.Length);
        for (var i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length && IsOctal(field[i + 1]) && IsOctal(field[i + 2]) && IsOctal(field[i + 3]))
            {
                text.Append((char)(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) | (field[i + 3] - '0')));
                i += 3;
            }
            else
            {
                text.Append(field[i]);
            }
        }
        return text.ToString();

        static bool IsOctal(char c) => c is >= '0' and <= '7';
    }

    internal sealed class Mount(string point, string device, string fsType)
    {
        public string Point { get; } = point;

        public IReadOnlyList<KeyValuePair<string, string>> Labels { get; } =
            [new("mount", point), new("device", device), new("fstype", fsType)];
    }
}
