using System.Globalization;

namespace Fleet.Agent.Commands;

/// <summary>
/// Linux process-tree bookkeeping from /proc. <see cref="System.Diagnostics.Process.Kill(bool)"/> can only find the
/// descendants of a process that is still running; once the command exits (e.g. on SIGTERM) its children are
/// re-parented and would escape. So the runner snapshots the tree before signalling and sweeps the survivors after.
/// Processes are identified by (pid, start time) so a recycled pid is never signalled.
/// </summary>
internal static class ProcessTree
{
    internal readonly record struct ProcessId(int Pid, ulong StartTime);

    private readonly record struct StatEntry(int Pid, int ParentPid, ulong StartTime, char State);

    /// <summary>The descendants (not the roots themselves) of the given processes, as currently visible in /proc.</summary>
    internal static HashSet<ProcessId> Descendants(IEnumerable<int> rootPids)
    {
        var byParent = new Dictionary<int, List<StatEntry>>();
        foreach (var entry in ReadAll())
        {
            if (!byParent.TryGetValue(entry.ParentPid, out var list)) byParent[entry.ParentPid] = list = [];
            list.Add(entry);
        }

        var result = new HashSet<ProcessId>();
        var queue = new Queue<int>(rootPids);
        var seen = new HashSet<int>(queue);
        while (queue.TryDequeue(out var pid))
        {
            if (!byParent.TryGetValue(pid, out var children)) continue;
            foreach (var child in children)
            {
                if (!seen.Add(child.Pid)) continue;
                result.Add(new ProcessId(child.Pid, child.StartTime));
                queue.Enqueue(child.Pid);
            }
        }
        return result;
    }

    /// <summary>True when the process still exists with the same start time and is not a zombie.</summary>
    internal static bool IsAlive(ProcessId id) =>
        TryRead(id.Pid, out var entry) && entry.StartTime == id.StartTime && entry.State is not ('Z' or 'X');

    /// <summary>
    /// SIGKILLs every still-alive process in <paramref name="known"/> plus all their current descendants.
    /// Members are SIGSTOPped first and the set is recomputed until it stops growing, so nothing forks its way out.
    /// Returns the number of processes killed.
    /// </summary>
    internal static int KillAll(IEnumerable<ProcessId> known)
    {
        var members = new HashSet<ProcessId>(known.Where(IsAlive));
        var stopped = new HashSet<ProcessId>();
        for (var round = 0; round < 16; round++)
        {
            foreach (var id in members)
            {
                if (stopped.Add(id)) Libc.Kill(id.Pid, Libc.SIGSTOP);
            }
            var grown = false;
            foreach (var child in Descendants(members.Select(m => m.Pid)))
            {
                if (members.Add(child)) grown = true;
            }
            if (!grown) break;
        }

        var killed = 0;
        foreach (var id in members)
        {
            // Re-check identity right before signalling: never hit a recycled pid.
            if (IsAlive(id) && Libc.Kill(id.Pid, Libc.SIGKILL) == 0) killed++;
        }
        return killed;
    }

    private static IEnumerable<StatEntry> ReadAll()
    {
        IEnumerable<string> dirs;
        try { dirs = Directory.EnumerateDirectories("/proc"); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { yield break; }

        foreach (var dir in dirs)
        {
            var name = Path.GetFileName(dir.AsSpan());
            if (name.IsEmpty || !char.IsAsciiDigit(name[0])) continue;
            if (!int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            if (TryRead(pid, out var entry)) yield return entry;
        }
    }

    private static bool TryRead(int pid, out StatEntry entry)
    {
        entry = default;
        string stat;
        try { stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat"); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return false; }

        // "pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime
        //  cstime priority nice num_threads itrealvalue starttime ..." — comm may contain spaces and ')'.
        var close = stat.LastIndexOf(')');
        if (close < 0 || close + 2 >= stat.Length) return false;
        var fields = stat[(close + 2)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // fields[0] = state (field 3), fields[1] = ppid (field 4), fields[19] = starttime (field 22)
        if (fields.Length < 20) return false;
        if (!int.TryParse(fields[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ppid)) return false;
        if (!ulong.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out var start)) return false;
        entry = new StatEntry(pid, ppid, start, fields[0].Length > 0 ? fields[0][0] : '?');
        return true;
    }
}
