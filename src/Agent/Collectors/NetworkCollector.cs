namespace Fleet.Agent.Collectors;

/// <summary>
/// "network": per-second rates from <c>/proc/net/dev</c> counters, as deltas between collections, labelled
/// <c>interface</c> (loopback <c>lo</c> skipped): <c>network.rx_bytes_per_second</c>, <c>network.tx_bytes_per_second</c>,
/// <c>network.rx_packets_per_second</c>, <c>network.tx_packets_per_second</c>, <c>network.rx_errors_per_second</c>,
/// <c>network.tx_errors_per_second</c>, <c>network.rx_drops_per_second</c>, <c>network.tx_drops_per_second</c>.
/// The interval is the time between the two collections (<see cref="MetricWriter.TimeUnixMs"/>), so rates agree
/// with the samples' timestamps. An interface starts at its second sample; one whose counters went backwards
/// (driver reset, interface recreated) gets no sample for that interval.
/// </summary>
public sealed class NetworkCollector(CollectorSettings settings) : ICollector
{
    private readonly string _path = Path.Combine(settings.ProcRoot, "net", "dev");
    private Dictionary<string, Counters> _previous = new(StringComparer.Ordinal);

    public string Name => "network";

    public ValueTask CollectAsync(MetricWriter writer, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var text = ProcText.ReadFile(_path);
        var current = new Dictionary<string, Counters>(_previous.Count, StringComparer.Ordinal);

        foreach (var range in text.AsSpan().Split('\n'))
        {
            // "  eth0: 456699811 11929 0 0 0 0 0 0 982584 8228 0 0 0 0 0 0" (no space after the colon for large values)
            var line = text.AsSpan(range);
            var colon = line.IndexOf(':');
            if (colon <= 0) continue; // the two header lines have '|' but no ':'
            var name = line[..colon].Trim();
            if (name.IsEmpty || name.SequenceEqual("lo")) continue;
            if (!TryParse(line[(colon + 1)..], writer.TimeUnixMs, out var now)) continue;

            var iface = name.ToString();
            current[iface] = now;
            if (_previous.TryGetValue(iface, out var before)) Write(writer, iface, before, now);
        }

        _previous = current;
        return ValueTask.CompletedTask;
    }

    private static void Write(MetricWriter writer, string iface, in Counters before, in Counters now)
    {
        var seconds = (now.TimeUnixMs - before.TimeUnixMs) / 1000.0;
        if (seconds <= 0) return; // wall clock went back: no meaningful rate
        if (now.RxBytes < before.RxBytes || now.TxBytes < before.TxBytes
            || now.RxPackets < before.RxPackets || now.TxPackets < before.TxPackets
            || now.RxErrors < before.RxErrors || now.TxErrors < before.TxErrors
            || now.RxDrops < before.RxDrops || now.TxDrops < before.TxDrops)
        {
            return;
        }
        writer.Add("network.rx_bytes_per_second", (now.RxBytes - before.RxBytes) / seconds, "interface", iface);
        writer.Add("network.tx_bytes_per_second", (now.TxBytes - before.TxBytes) / seconds, "interface", iface);
        writer.Add("network.rx_packets_per_second", (now.RxPackets - before.RxPackets) / seconds, "interface", iface);
        writer.Add("network.tx_packets_per_second", (now.TxPackets - before.TxPackets) / seconds, "interface", iface);
        writer.Add("network.rx_errors_per_second", (now.RxErrors - before.RxErrors) / seconds, "interface", iface);
        writer.Add("network.tx_errors_per_second", (now.TxErrors - before.TxErrors) / seconds, "interface", iface);
        writer.Add("network.rx_drops_per_second", (now.RxDrops - before.RxDrops) / seconds, "interface", iface);
        writer.Add("network.tx_drops_per_second", (now.TxDrops - before.TxDrops) / seconds, "interface", iface);
    }

    private static bool TryParse(ReadOnlySpan<char> rest, long timeUnixMs, out Counters counters)
    {
        // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs drop fifo colls carrier compressed
        Span<ulong> values = stackalloc ulong[16];
        var count = 0;
        while (count < values.Length && ProcText.NextUInt64(ref rest, out var value)) values[count++] = value;
        counters = new Counters(timeUnixMs, values[0], values[1], values[2], values[3], values[8], values[9], values[10], values[11]);
        return count == values.Length;
    }

    private readonly record struct Counters(
        long TimeUnixMs,
        ulong RxBytes, ulong RxPackets, ulong RxErrors, ulong RxDrops,
        ulong TxBytes, ulong TxPackets, ulong TxErrors, ulong TxDrops);
}
