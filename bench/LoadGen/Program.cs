using System.Runtime.InteropServices;
using Fleet.Bench.LoadGen;

var options = LoadGenOptions.Parse(args, out var error);
if (options is null)
{
    if (string.IsNullOrEmpty(error))
    {
        Console.WriteLine(LoadGenOptions.Usage);
        return 0;
    }
    Console.Error.WriteLine($"fleet-loadgen: {error}");
    Console.Error.WriteLine("run with --help for the options");
    return 2;
}

// Ctrl+C / SIGTERM end the run early; the summary is still printed and streams are still closed cleanly.
using var stop = new CancellationTokenSource();
void OnSignal(PosixSignalContext context)
{
    if (!stop.IsCancellationRequested)
    {
        context.Cancel = true;
        Console.Error.WriteLine($"fleet-loadgen: {context.Signal}, stopping early (again to abort)");
        stop.Cancel();
    }
}
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

WarnAboutFileDescriptors(options);

return await new LoadRun(options, Console.Out).RunAsync(stop.Token);

// Each connection is a file descriptor; 10,000 agents need `ulimit -n` well above 10,000 (bench/agents.sh raises it).
static void WarnAboutFileDescriptors(LoadGenOptions options)
{
    if (!OperatingSystem.IsLinux())
    {
        return;
    }
    try
    {
        var line = File.ReadLines("/proc/self/limits").FirstOrDefault(l => l.StartsWith("Max open files", StringComparison.Ordinal));
        var soft = line?.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3];
        var connections = (options.Agents + options.AgentsPerConnection - 1) / options.AgentsPerConnection;
        if (soft is not null && soft != "unlimited" && long.TryParse(soft, out var limit) && limit < connections + 1000)
        {
            Console.Error.WriteLine($"fleet-loadgen: warning: open-file limit {limit} is too low for {connections} connections; " +
                "raise it (`ulimit -n 65536`, or run through bench/agents.sh) or expect connect failures.");
        }
    }
    catch (IOException)
    {
    }
}
