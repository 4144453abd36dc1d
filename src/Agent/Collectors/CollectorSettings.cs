namespace Fleet.Agent.Collectors;

/// <summary>Configuration of one collector. Only the settings a collector uses matter to it.</summary>
public sealed class CollectorSettings
{
    /// <summary>Time between collections.</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A collection still running after this is cancelled and counted as timed out.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Where procfs is mounted; tests point it at a directory of fixture files.</summary>
    public string ProcRoot { get; init; } = "/proc";

    /// <summary>
    /// For "process": what to watch. A plain entry (<c>nginx</c>, <c>/usr/sbin/sshd</c>) matches a process whose name
    /// (comm), first argument or first argument's file name equals it. An entry between slashes (<c>/java .*kafka/</c>)
    /// is a regular expression searched in the command line (arguments joined by spaces; the name for kernel threads).
    /// The entry, as written, is the <c>process</c> label.
    /// </summary>
    public IReadOnlyList<string> Processes { get; init; } = [];

    /// <summary>For "textfile": the directory whose <c>*.prom</c> files are read.</summary>
    public string? TextfileDirectory { get; init; }

    /// <summary>
    /// For collectors that can watch their source (<see cref="IWatchableCollector"/>: "textfile"): also collect as soon
    /// as the source changes (a <c>*.prom</c> file created, written, renamed into place or deleted), not only every
    /// <see cref="Interval"/>, and send those samples at once. The interval stays the fallback for missed events.
    /// </summary>
    public bool Watch { get; init; } = true;
}
