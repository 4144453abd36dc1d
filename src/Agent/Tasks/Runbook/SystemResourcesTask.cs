using System.Globalization;
using Fleet.Agent.Collectors;
using Fleet.Protocol.V1;

namespace Fleet.Agent.Tasks.Runbook;

/// <summary>
/// system.resources: CPU busy ratio (over <see cref="SampleWindow"/>), memory, disk per mount, load, and the top 5
/// processes by CPU and by memory, from the agent's own collectors and /proc parsing.
/// </summary>
public sealed class SystemResourcesTask : IAgentTask
{
    public static readonly TimeSpan SampleWindow = TimeSpan.FromMilliseconds(500);
    const int Top = 5;

    public TaskDescriptor Descriptor { get; } = TaskSchema.Describe(
        "system.resources", "CPU, memory, disk per mount, load and the top processes by CPU and memory.", false,
        TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(5));

    /// <summary>Where procfs is; tests may point it elsewhere.</summary>
    internal string ProcRoot { get; init; } = "/proc";

    public async Task<TaskOutcome> ExecuteAsync(TaskContext context, CancellationToken cancellationToken)
    {
        if (context.DryRun)
        {
            await context.Output.WriteLineAsync("would read /proc (cpu, memory, load, processes) and statvfs of every mount", cancellationToken);
            return TaskOutcome.Succeeded("dry run: would report CPU, memory, disk, load and top processes");
        }
        var settings = new CollectorSettings { ProcRoot = ProcRoot, Timeout = TimeSpan.FromSeconds(10) };
        var cpu = new CpuCollector(settings);
        var before = Processes();
        var started = context.Time.GetTimestamp();
        await cpu.CollectAsync(new MetricWriter(0), cancellationToken);
        await Task.Delay(SampleWindow, context.Time, cancellationToken);
        var elapsed = context.Time.GetElapsedTime(started).TotalSeconds;
        var writer = new MetricWriter(context.Time.GetUtcNow().ToUnixTimeMilliseconds());
        await cpu.CollectAsync(writer, cancellationToken);
        await new MemoryCollector(settings).CollectAsync(writer, cancellationToken);
        await new LoadCollector(settings).CollectAsync(writer, cancellationToken);
        await new DiskCollector(settings).CollectAsync(writer, cancellationToken);
        var after = Processes();

        var figures = new Dictionary<string, double>(StringComparer.Ordinal);
        string? Value(string name) => writer.Samples.FirstOrDefault(s => s.Name == name && s.Labels.Count == 0) is { } s ? Keep(name, s.Value) : null;
        string Keep(string name, double value) { figures[name] = value; return value.ToString("0.###", CultureInfo.InvariantCulture); }

        double ticks = ProcessCollector.ClockTicksPerSecond();
        var processes = after.Select(p => new ProcessUse(p.Key, p.Value.Comm,
                before.TryGetValue(p.Key, out var b) && b.StartTicks == p.Value.StartTicks ? (p.Value.UserTicks + p.Value.SystemTicks - b.UserTicks - b.SystemTicks) / ticks / elapsed : 0,
                (double)p.Value.RssPages * Environment.SystemPageSize))
            .ToList();
        var byCpu = processes.OrderByDescending(p => p.CpuRatio).Take(Top).ToList();
        var byMemory = processes.OrderByDescending(p => p.RssBytes).Take(Top).ToList();
        var disks = writer.Samples.Where(s => s.Name == "disk.used_ratio").Select(s => (Mount: s.Labels.GetValueOrDefault("mount") ?? "?", Ratio: s.Value)).OrderByDescending(d => d.Ratio).ToList();

        var o = context.Output;
        await o.WriteLineAsync($"cpu.usage {Value("cpu.usage") ?? "?"}", cancellationToken);
        await o.WriteLineAsync($"memory.used_ratio {Value("memory.used_ratio") ?? "?"} (used {Value("memory.used_bytes")} of {Value("memory.total_bytes")} bytes)", cancellationToken);
        await o.WriteLineAsync($"load {Value("load.1m")} {Value("load.5m")} {Value("load.15m")}", cancellationToken);
        foreach (var (mount, ratio) in disks) await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"disk {mount} used_ratio {ratio:0.###}"), cancellationToken);
        if (disks.Count > 0) figures["disk.worst_used_ratio"] = disks[0].Ratio;
        await o.WriteLineAsync("top by cpu:", cancellationToken);
        foreach (var p in byCpu) await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"  {p.Pid,7} {p.Name,-16} cpu {p.CpuRatio:0.###}"), cancellationToken);
        await o.WriteLineAsync("top by memory:", cancellationToken);
        foreach (var p in byMemory) await o.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"  {p.Pid,7} {p.Name,-16} rss {p.RssBytes / 1048576:0.#} MiB"), cancellationToken);

        var json = ResultJson.Build(w =>
        {
            w.WriteStartObject();
            w.WriteStartObject("figures");
            foreach (var (k, v) in figures) w.WriteNumber(k, v);
            w.WriteEndObject();
            w.WriteStartArray("disks");
            foreach (var (mount, ratio) in disks) { w.WriteStartObject(); w.WriteString("mount", mount); w.WriteNumber("usedRatio", ratio); w.WriteEndObject(); }
            w.WriteEndArray();
            WriteProcesses(w, "topByCpu", byCpu);
            WriteProcesses(w, "topByMemory", byMemory);
            w.WriteEndObject();
        });
        var summary = string.Create(CultureInfo.InvariantCulture,
            $"cpu {figures.GetValueOrDefault("cpu.usage"):P0}, memory {figures.GetValueOrDefault("memory.used_ratio"):P0}, worst disk {figures.GetValueOrDefault("disk.worst_used_ratio"):P0}, load {figures.GetValueOrDefault("load.1m"):0.##}");
        return TaskOutcome.Succeeded(summary, figures, json);
    }

    static void WriteProcesses(System.Text.Json.Utf8JsonWriter w, string name, List<ProcessUse> processes)
    {
        w.WriteStartArray(name);
        foreach (var p in processes)
        {
            w.WriteStartObject();
            w.WriteNumber("pid", p.Pid);
            w.WriteString("name", p.Name);
            w.WriteNumber("cpuRatio", Math.Round(p.CpuRatio, 4));
            w.WriteNumber("rssBytes", p.RssBytes);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    Dictionary<int, ProcessCollector.StatFields> Processes()
    {
        var result = new Dictionary<int, ProcessCollector.StatFields>();
        foreach (var directory in Directory.EnumerateDirectories(ProcRoot))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            try
            {
                if (ProcessCollector.TryParseStat(File.ReadAllText(Path.Combine(directory, "stat")), out var fields)) result[pid] = fields;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        }
        return result;
    }

    sealed record ProcessUse(int Pid, string Name, double CpuRatio, double RssBytes);
}
