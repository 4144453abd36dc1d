namespace Fleet.Agent.Collectors;

/// <summary>
/// "load": from <c>/proc/loadavg</c>: <c>load.1m</c>, <c>load.5m</c>, <c>load.15m</c> (load averages),
/// <c>load.running</c> (runnable tasks) and <c>load.processes</c> (all tasks).
/// </summary>
public sealed class LoadCollector(CollectorSettings settings) : ICollector
{
    private readonly string _path = Path.Combine(settings.ProcRoot, "loadavg");

    public string Name => "load";

    public ValueTask CollectAsync(MetricWriter writer, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var text = ProcText.ReadFile(_path);
        // "0.42 0.30 0.25 3/219 21936"
        var rest = text.AsSpan();
        if (!ProcText.NextDouble(ref rest, out var load1)
            || !ProcText.NextDouble(ref rest, out var load5)
            || !ProcText.NextDouble(ref rest, out var load15)
            || !ProcText.NextToken(ref rest, out var tasks)
            || tasks.IndexOf('/') is var slash && slash <= 0
            || !ulong.TryParse(tasks[..slash], out var running)
            || !ulong.TryParse(tasks[(slash + 1)..], out var processes))
        {
            throw new InvalidDataException($"Unexpected content in {_path}: '{text.Trim()}'");
        }

        writer.Add("load.1m", load1);
        writer.Add("load.5m", load5);
        writer.Add("load.15m", load15);
        writer.Add("load.running", running);
        writer.Add("load.processes", processes);
        return ValueTask.CompletedTask;
    }
}
