namespace Fleet.Agent.Collectors;

/// <summary>
/// "cpu": shares of CPU time from <c>/proc/stat</c>, as deltas between two collections (the first only primes).
/// <list type="bullet">
/// <item><c>cpu.usage</c>: busy ratio (0..1), 1 - (idle + iowait) / total, for the machine (no label) and per core
/// (label <c>cpu</c> = "0", "1", ...).</item>
/// <item><c>cpu.user</c> (user + nice), <c>cpu.system</c> (system + irq + softirq), <c>cpu.iowait</c>,
/// <c>cpu.steal</c>: ratios for the machine.</item>
/// </list>
/// Total time is user + nice + system + idle + iowait + irq + softirq + steal (guest time is already in user).
/// A core whose counters went backwards (counter reset, VM migration) gets no sample for that interval; it is measured
/// again from the new values. The exception is iowait alone going backwards, which the kernel documents as normal on
/// idle cores: that delta counts as zero. Cores that appear start at their second sample; cores that disappear are dropped.
/// </summary>
public sealed class CpuCollector(CollectorSettings settings) : ICollector
{
    private readonly string _path = Path.Combine(settings.ProcRoot, "stat");
    private Dictionary<string, CpuTimes> _previous = new(StringComparer.Ordinal);

    public string Name => "cpu";

    public ValueTask CollectAsync(MetricWriter writer, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var text = ProcText.ReadFile(_path);
        var current = new Dictionary<string, CpuTimes>(_previous.Count, StringComparer.Ordinal);

        foreach (var range in text.AsSpan().Split('\n'))
        {
            var line = text.AsSpan(range);
            if (!line.StartsWith("cpu"))
            {
                if (current.Count > 0) break; // the cpu lines come first and together
                continue;
            }
            var rest = line;
            ProcText.NextToken(ref rest, out var label);
            var core = label.Length == 3 ? "" : label[3..].ToString();
            if (!TryParse(rest, out var times)) continue;
            current[core] = times;
            if (_previous.TryGetValue(core, out var before)) Write(writer, core, before, times);
        }

        if (current.Count == 0) throw new InvalidDataException($"No cpu lines in {_path}");
        _previous = current;
        return ValueTask.CompletedTask;
    }

    private static void Write(MetricWriter writer, string core, in CpuTimes before, in CpuTimes now)
    {
        if (now.User < before.User || now.Nice < before.Nice || now.System < before.System || now.Idle < before.Idle
            || now.Irq < before.Irq || now.SoftIrq < before.SoftIrq || now.Steal < before.Steal)
        {
            return;
        }
        double user = now.User - before.User;
        double nice = now.Nice - before.Nice;
        double system = now.System - before.System;
        double idle = now.Idle - before.Idle;
        double iowait = now.IoWait >= before.IoWait ? now.IoWait - before.IoWait : 0;
        double irq = now.Irq - before.Irq;
        double softIrq = now.SoftIrq - before.SoftIrq;
        double steal = now.Steal - before.Steal;
        var total = user + nice + system + idle + iowait + irq + softIrq + steal;
        if (total <= 0) return; // no time passed on this core

        var usage = (total - idle - iowait) / total;
        if (core.Length > 0)
        {
            writer.Add("cpu.usage", usage, "cpu", core);
            return;
        }
        writer.Add("cpu.usage", usage);
        writer.Add("cpu.user", (user + nice) / total);
        writer.Add("cpu.system", (system + irq + softIrq) / total);
        writer.Add("cpu.iowait", iowait / total);
        writer.Add("cpu.steal", steal / total);
    }

    private static bool TryParse(ReadOnlySpan<char> rest, out CpuTimes times)
    {
        // user nice system idle [iowait irq softirq [steal [guest [guest_nice]]]]: older kernels have fewer columns.
        Span<ulong> values = stackalloc ulong[8];
        var count = 0;
        while (count < values.Length && ProcText.NextUInt64(ref rest, out var value)) values[count++] = value;
        times = new CpuTimes(values[0], values[1], values[2], values[3], values[4], values[5], values[6], values[7]);
        return count >= 4;
    }

    private readonly record struct CpuTimes(
        ulong User, ulong Nice, ulong System, ulong Idle, ulong IoWait, ulong Irq, ulong SoftIrq, ulong Steal);
}
