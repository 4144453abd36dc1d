using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Fleet.Testing;

/// <summary>
/// A real process under test (coordinator, agent, fleetctl): output kept for diagnostics, stopped with
/// SIGTERM (graceful) or SIGKILL (kill -9), always killed on dispose.
/// </summary>
public sealed partial class ChildProcess : IAsyncDisposable
{
    readonly Process process;
    readonly ConcurrentQueue<string> output = new();

    public string Name { get; }
    public int Pid => process.Id;
    public bool HasExited => process.HasExited;
    public int ExitCode => process.ExitCode;
    public string Output => string.Join('\n', output);

    ChildProcess(string name, Process process)
    {
        Name = name;
        this.process = process;
    }

    public static ChildProcess Start(string name, string fileName, IEnumerable<string> arguments, IDictionary<string, string?>? environment = null, string? workingDirectory = null)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        // Keep the test runner's own settings from leaking into the process under test.
        info.Environment.Remove("ASPNETCORE_ENVIRONMENT");
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        if (environment is not null)
            foreach (var (k, v) in environment)
                if (v is null) info.Environment.Remove(k); else info.Environment[k] = v;
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var child = new ChildProcess(name, process);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) child.output.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) child.output.Enqueue(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>Runs `dotnet path.dll args`.</summary>
    public static ChildProcess StartDotnet(string name, string dll, IEnumerable<string> arguments, IDictionary<string, string?>? environment = null, string? workingDirectory = null) =>
        Start(name, "dotnet", [dll, .. arguments], environment, workingDirectory);

    /// <summary>kill -9: no cleanup, no goodbye.</summary>
    public async Task KillAsync()
    {
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>SIGTERM, then wait for a clean exit.</summary>
    public async Task<int> TerminateAsync(TimeSpan? timeout = null)
    {
        if (!process.HasExited) _ = SendSignal(process.Id, 15);
        await process.WaitForExitAsync().WaitAsync(timeout ?? TimeSpan.FromSeconds(30));
        return process.ExitCode;
    }

    public async Task<int> WaitForExitAsync(TimeSpan? timeout = null)
    {
        await process.WaitForExitAsync().WaitAsync(timeout ?? TimeSpan.FromSeconds(60));
        process.WaitForExit(); // flush the output readers
        return process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        try { await KillAsync(); }
        catch (InvalidOperationException) { }
        catch (TimeoutException) { }
        process.Dispose();
    }

    public override string ToString() => $"{Name} (pid {process.Id})\n{Output}";

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SendSignal(int pid, int signal);
}
