using System.Diagnostics;
using System.Runtime.Versioning;
using Fleet.Agent.Commands;
using Fleet.Testing;
using Microsoft.Extensions.Logging;

namespace Fleet.Agent.Tests.Commands;

/// <summary>
/// A temporary directory of stand-in executables (small #!/bin/sh scripts) put first on the child's PATH, so commands
/// that cannot run in a test container (systemctl, apt, ...) are exercised through the real runner.
/// On dispose, every pid written to a *.pid file in the directory is killed, so a failing test leaks no sleeps.
/// </summary>
[SupportedOSPlatform("linux")]
internal sealed class StandIns : IDisposable
{
    private readonly TempDirectory _temp = new();

    public StandIns() => Bin = Directory.CreateDirectory(_temp.Combine("bin")).FullName;

    /// <summary>Directory holding the stand-ins; first on the PATH of specs made by <see cref="Spec"/>.</summary>
    public string Bin { get; }

    /// <summary>A path in the scratch directory (outside <see cref="Bin"/>), for files the scripts write.</summary>
    public string File(string name) => _temp.Combine(name);

    public string Write(string name, string body, bool executable = true)
    {
        var path = Path.Combine(Bin, name);
        System.IO.File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        System.IO.File.SetUnixFileMode(path, executable
            ? UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead |
              UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute
            : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        return path;
    }

    public CommandSpec Spec(string command, params string[] arguments) => new(command, arguments)
    {
        Environment = new Dictionary<string, string?> { ["PATH"] = Bin + ":" + Environment.GetEnvironmentVariable("PATH") },
        Timeout = TimeSpan.FromSeconds(30),
    };

    public static CommandRunner Runner(ILogger<CommandRunner>? logger = null) =>
        new(logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger<CommandRunner>.Instance, TimeProvider.System);

    /// <summary>Reads a pid a script wrote, waiting for the file to be complete.</summary>
    public async Task<int> ReadPidAsync(string name) =>
        await Eventually.UntilAsync(
            () => Task.FromResult(System.IO.File.Exists(File(name)) && int.TryParse(System.IO.File.ReadAllText(File(name)).Trim(), out var pid) ? pid : 0),
            pid => pid > 0, $"pid file {name}");

    /// <summary>True when the process is gone or a zombie (an orphan's zombie may linger if init does not reap it).</summary>
    public static bool IsGone(int pid)
    {
        try
        {
            var stat = System.IO.File.ReadAllText($"/proc/{pid}/stat");
            var state = stat[stat.LastIndexOf(')') + 2];
            return state is 'Z' or 'X';
        }
        catch (IOException)
        {
            return true;
        }
    }

    public void Dispose()
    {
        foreach (var pidFile in Directory.EnumerateFiles(_temp.Path, "*.pid"))
        {
            try
            {
                if (int.TryParse(System.IO.File.ReadAllText(pidFile).Trim(), out var pid) && !IsGone(pid))
                {
                    using var process = Process.GetProcessById(pid);
                    process.Kill();
                }
            }
            catch (Exception ex) when (ex is IOException or ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception) { }
        }
        _temp.Dispose();
    }
}

/// <summary>Collects log entries (rendered message and structured values) for assertions.</summary>
internal sealed class RecordingLogger<T> : ILogger<T>
{
    public record Entry(LogLevel Level, string Message, IReadOnlyList<KeyValuePair<string, object?>> Values);

    private readonly List<Entry> _entries = [];

    public IReadOnlyList<Entry> Entries { get { lock (_entries) return [.. _entries]; } }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        var values = state as IReadOnlyList<KeyValuePair<string, object?>> ?? [];
        lock (_entries) _entries.Add(new Entry(logLevel, formatter(state, exception), [.. values]));
    }
}
