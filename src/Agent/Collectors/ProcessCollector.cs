using System.Globalization;
using System.Text.RegularExpressions;

namespace Fleet.Agent.Collectors;

/// <summary>
/// "process": for each entry of <see cref="CollectorSettings.Processes"/>, the processes matching it, from
/// <c>/proc/[pid]/stat</c> (and <c>/proc/[pid]/cmdline</c> when the entry needs the command line), labelled
/// <c>process</c> with the entry as written: <c>process.count</c> (0 when down), <c>process.up</c> (1/0),
/// <c>process.rss_bytes</c> (summed), <c>process.cpu_ratio</c> (CPU time of the matches over wall time since the
/// previous collection, summed: 1 = one core busy; from the second collection on), <c>process.uptime_seconds</c>
/// (of the oldest match, from <c>/proc/uptime</c>). The last three only while something matches.
/// </summary>
public sealed class ProcessCollector : ICollector
{
    /// <summary>The kernel truncates comm to 15 characters.</summary>
    private const int CommLength = 15;

    private readonly string _procRoot;
    private readonly Matcher[] _matchers;
    private readonly double _ticksPerSecond;
    private readonly long _pageSize;
    private Dictionary<int, PidTicks> _previous = [];
    private long? _previousTimeUnixMs;

    public ProcessCollector(CollectorSettings settings) : this(settings, ClockTicksPerSecond(), Environment.SystemPageSize)
    {
    }

    /// <param name="settings">ProcRoot and Processes are used.</param>
    /// <param name="ticksPerSecond">USER_HZ, the unit of times in /proc/[pid]/stat.</param>
    /// <param name="pageSize">The unit of rss in /proc/[pid]/stat.</param>
    /// <exception cref="ArgumentException">No entries, an empty entry or an invalid pattern.</exception>
    public ProcessCollector(CollectorSettings settings, long ticksPerSecond, long pageSize)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ticksPerSecond, 0);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(pageSize, 0);
        if (settings.Processes.Count == 0)
        {
            throw new ArgumentException("The process collector needs at least one process name or /pattern/ in Processes.", nameof(settings));
        }
        _procRoot = settings.ProcRoot;
        _matchers = [.. settings.Processes.Select(Matcher.Parse)];
        _ticksPerSecond = ticksPerSecond;
        _pageSize = pageSize;
    }

    public string Name => "process";

    public ValueTask CollectAsync(MetricWriter writer, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var uptime = ReadUptime();
        var found = new Found[_matchers.Length];
        var current = new Dictionary<int, PidTicks>(_previous.Count);

        foreach (var directory in Directory.EnumerateDirectories(_procRoot))
        {
            if (!int.TryParse(Path.GetFileName(directory.AsSpan()), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            cancellationToken.ThrowIfCancellationRequested();
            if (ReadProcFile(directory, "stat") is not { } stat || !TryParseStat(stat, out var process)) continue;

            string? commandLine = null;
            double? cpuTicks = null;
            for (var i = 0; i < _matchers.Length; i++)
            {
                if (!_matchers[i].Matches(process.Comm, directory, ref commandLine)) continue;
                if (cpuTicks is null)
                {
                    var ticks = process.UserTicks + process.SystemTicks;
                    current[pid] = new PidTicks(process.StartTicks, ticks);
                    cpuTicks = _previous.TryGetValue(pid, out var before) && before.StartTicks == process.StartTicks && ticks >= before.Ticks
                        ? ticks - before.Ticks
                        : 0;
                }
                ref var entry = ref found[i];
                entry.Count++;
                entry.RssPages += process.RssPages;
                entry.CpuTicks += cpuTicks.Value;
                entry.OldestStartTicks = entry.Count == 1 ? process.StartTicks : Math.Min(entry.OldestStartTicks, process.StartTicks);
            }
        }

        double? seconds = _previousTimeUnixMs is { } previousTime && writer.TimeUnixMs > previousTime
            ? (writer.TimeUnixMs - previousTime) / 1000.0
            : null;
        for (var i = 0; i < _matchers.Length; i++)
        {
            var label = _matchers[i].Entry;
            var entry = found[i];
            writer.Add("process.count", entry.Count, "process", label);
            writer.Add("process.up", entry.Count > 0 ? 1 : 0, "process", label);
            if (entry.Count == 0) continue;
            writer.Add("process.rss_bytes", (double)entry.RssPages * _pageSize, "process", label);
            if (seconds is { } elapsed) writer.Add("process.cpu_ratio", entry.CpuTicks / _ticksPerSecond / elapsed, "process", label);
            if (uptime is { } up) writer.Add("process.uptime_seconds", Math.Max(0, up - entry.OldestStartTicks / _ticksPerSecond), "process", label);
        }

        _previous = current;
        _previousTimeUnixMs = writer.TimeUnixMs;
        return ValueTask.CompletedTask;
    }

    private double? ReadUptime()
    {
        // "4206.93 2847.81": seconds since boot, idle seconds
        if (ReadProcFile(_procRoot, "uptime") is not { } text) return null;
        var rest = text.AsSpan();
        return ProcText.NextDouble(ref rest, out var seconds) ? seconds : null;
    }

    /// <summary>A file of a process that may exit while it is read: null when it is gone or unreadable.</summary>
    private static string? ReadProcFile(string directory, string name)
    {
        try
        {
            return ProcText.ReadFile(Path.Combine(directory, name));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Parses "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so it ends at the last ')'.</summary>
    internal static bool TryParseStat(string stat, out StatFields fields)
    {
        fields = default;
        var open = stat.IndexOf('(', StringComparison.Ordinal);
        var close = stat.LastIndexOf(')');
        if (open < 0 || close < open) return false;
        var rest = stat.AsSpan(close + 1);
        // After comm: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15)
        // cutime cstime priority nice num_threads itrealvalue starttime(22) vsize rss(24)
        if (!ProcText.Skip(ref rest, 11)
            || !ProcText.NextUInt64(ref rest, out var utime)
            || !ProcText.NextUInt64(ref rest, out var stime)
            || !ProcText.Skip(ref rest, 6)
            || !ProcText.NextUInt64(ref rest, out var starttime)
            || !ProcText.Skip(ref rest, 1)
            || !ProcText.NextToken(ref rest, out var rssToken)
            || !long.TryParse(rssToken, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var rss))
        {
            return false;
        }
        fields = new StatFields(stat[(open + 1)..close], utime, stime, starttime, (ulong)Math.Max(0, rss));
        return true;
    }

    internal static long ClockTicksPerSecond()
    {
        var ticks = (long)CollectorsLibc.Sysconf(CollectorsLibc.SC_CLK_TCK);
        return ticks > 0 ? ticks : 100;
    }

    internal readonly record struct StatFields(string Comm, ulong UserTicks, ulong SystemTicks, ulong StartTicks, ulong RssPages);

    private readonly record struct PidTicks(ulong StartTicks, ulong Ticks);

    private struct Found
    {
        public int Count;
        public ulong RssPages;
        public double CpuTicks;
        public ulong OldestStartTicks;
    }

    /// <summary>One entry of Processes: a plain name or a /pattern/.</summary>
    private sealed class Matcher
    {
        private readonly Regex? _pattern;
        private readonly bool _isPath;
        private readonly bool _isLong;

        private Matcher(string entry, Regex? pattern)
        {
            Entry = entry;
            _pattern = pattern;
            _isPath = entry.Contains('/', StringComparison.Ordinal);
            _isLong = entry.Length > CommLength;
        }

        public string Entry { get; }

        public static Matcher Parse(string entry)
        {
            if (string.IsNullOrWhiteSpace(entry)) throw new ArgumentException("An entry of Processes is empty.", nameof(entry));
            if (entry.Length < 3 || entry[0] != '/' || entry[^1] != '/') return new Matcher(entry, null);
            try
            {
                return new Matcher(entry, new Regex(entry[1..^1], RegexOptions.CultureInvariant | RegexOptions.NonBacktracking));
            }
            catch (ArgumentException ex)
            {
                throw new ArgumentException($"Process pattern '{entry}' is not a valid regular expression: {ex.Message}", nameof(entry), ex);
            }
        }

        /// <param name="comm">The process name from stat.</param>
        /// <param name="directory">The process's /proc directory.</param>
        /// <param name="commandLine">Raw cmdline (NUL-separated), read on first need and kept for the other entries.</param>
        public bool Matches(string comm, string directory, ref string? commandLine)
        {
            if (_pattern is not null)
            {
                commandLine ??= ReadProcFile(directory, "cmdline") ?? "";
                var text = commandLine.Replace('\0', ' ').TrimEnd();
                return _pattern.IsMatch(text.Length > 0 ? text : comm);
            }
            if (comm == Entry) return true;
            // A path, or a name longer than comm keeps: compare with the first argument and its file name.
            if (!_isPath && !(_isLong && comm.Length == CommLength && Entry.StartsWith(comm, StringComparison.Ordinal))) return false;
            commandLine ??= ReadProcFile(directory, "cmdline") ?? "";
            var argv0 = commandLine.AsSpan();
            var end = argv0.IndexOf('\0');
            if (end >= 0) argv0 = argv0[..end];
            return argv0.SequenceEqual(Entry) || Path.GetFileName(argv0).SequenceEqual(Entry);
        }
    }
}
