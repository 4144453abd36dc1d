using System.Diagnostics;

namespace Fleet.Bench.LoadGen;

/// <summary>The load generator's own CPU and memory, so benchmark users can subtract it from what the machine spent.</summary>
public sealed class ProcessMeter : IDisposable
{
    readonly Process _self = Process.GetCurrentProcess();

    public ProcessSample Sample()
    {
        _self.Refresh();
        return new ProcessSample(
            CpuSeconds: _self.TotalProcessorTime.TotalSeconds,
            RssBytes: _self.WorkingSet64,
            GcHeapBytes: GC.GetTotalMemory(forceFullCollection: false),
            Threads: ThreadPool.ThreadCount,
            ThreadPoolQueue: ThreadPool.PendingWorkItemCount,
            GcPause: GC.GetTotalPauseDuration());
    }

    /// <summary>Peak resident set size (VmHWM on Linux), or null where unavailable.</summary>
    public static long? PeakRssBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    var kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                    return long.Parse(kb, System.Globalization.CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return null;
    }

    public void Dispose() => _self.Dispose();
}

public readonly record struct ProcessSample(double CpuSeconds, long RssBytes, long GcHeapBytes, int Threads, long ThreadPoolQueue, TimeSpan GcPause);
