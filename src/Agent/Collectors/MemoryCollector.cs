namespace Fleet.Agent.Collectors;

/// <summary>
/// "memory": from <c>/proc/meminfo</c> (kB values, reported in bytes): <c>memory.total_bytes</c> (MemTotal),
/// <c>memory.available_bytes</c> (MemAvailable; MemFree + Buffers + Cached on kernels before 3.14),
/// <c>memory.used_bytes</c> (total - available), <c>memory.used_ratio</c> (used / total),
/// <c>memory.cached_bytes</c> (Cached), <c>memory.swap_total_bytes</c>, <c>memory.swap_used_bytes</c> (SwapTotal - SwapFree).
/// </summary>
public sealed class MemoryCollector(CollectorSettings settings) : ICollector
{
    private readonly string _path = Path.Combine(settings.ProcRoot, "meminfo");

    public string Name => "memory";

    public ValueTask CollectAsync(MetricWriter writer, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var text = ProcText.ReadFile(_path);
        ulong? total = null, free = null, available = null, buffers = null, cached = null, swapTotal = null, swapFree = null;

        foreach (var range in text.AsSpan().Split('\n'))
        {
            var line = text.AsSpan(range);
            var colon = line.IndexOf(':');
            if (colon <= 0) continue;
            var rest = line[(colon + 1)..];
            if (!ProcText.NextUInt64(ref rest, out var kib)) continue;
            var bytes = kib * 1024;
            switch (line[..colon])
            {
                case "MemTotal": total = bytes; break;
                case "MemFree": free = bytes; break;
                case "MemAvailable": available = bytes; break;
                case "Buffers": buffers = bytes; break;
                case "Cached": cached = bytes; break;
                case "SwapTotal": swapTotal = bytes; break;
                case "SwapFree": swapFree = bytes; break;
            }
        }

        if (total is not { } memTotal) throw new InvalidDataException($"No MemTotal in {_path}");
        var memAvailable = Math.Min(memTotal, available ?? (free ?? 0) + (buffers ?? 0) + (cached ?? 0));
        var used = memTotal - memAvailable;

        writer.Add("memory.total_bytes", memTotal);
        writer.Add("memory.available_bytes", memAvailable);
        writer.Add("memory.used_bytes", used);
        if (memTotal > 0) writer.Add("memory.used_ratio", (double)used / memTotal);
        if (cached is { } memCached) writer.Add("memory.cached_bytes", memCached);
        if (swapTotal is { } swap)
        {
            writer.Add("memory.swap_total_bytes", swap);
            writer.Add("memory.swap_used_bytes", swap - Math.Min(swap, swapFree ?? swap));
        }
        return ValueTask.CompletedTask;
    }
}
