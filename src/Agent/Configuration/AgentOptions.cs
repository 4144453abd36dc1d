namespace Fleet.Agent.Configuration;

/// <summary>The agent's effective settings, from /etc/fleet-agent/agent.json or given by an embedding host.</summary>
public sealed class AgentOptions
{
    public const string DefaultConfigPath = "/etc/fleet-agent/agent.json";
    public const string DefaultStateDirectory = "/var/lib/fleet-agent";

    /// <summary>The coordinator's gRPC address, e.g. http://coordinator:5081.</summary>
    public Uri Coordinator { get; set; } = new("http://127.0.0.1:5081");

    /// <summary>A fixed agent id; when null one is generated once and kept in the state directory.</summary>
    public string? AgentId { get; set; }

    /// <summary>Identity, epoch and outbox live here; wiping it resets the agent's state.</summary>
    public string StateDirectory { get; set; } = DefaultStateDirectory;

    public Dictionary<string, string> Tags { get; set; } = [];

    /// <summary>Heartbeat interval until the coordinator's welcome says otherwise.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>First reconnect delay; doubles per failure with jitter up to <see cref="ReconnectMaxDelay"/>.</summary>
    public TimeSpan ReconnectInitialDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    public TimeSpan ReconnectMaxDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Bound of the durable outbox on disk.</summary>
    public long OutboxMaxBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>The coordinator accepts messages up to 4 MiB; the default leaves a margin for framing.</summary>
    public const int DefaultMaxMessageBytes = 4 * 1024 * 1024 - 64 * 1024;

    /// <summary>Largest AgentMessage sent to the coordinator. An outbox record that would make a larger one is never sent
    /// (the coordinator would close the stream and the record would block every later one): it is rejected locally,
    /// logged and counted. Metric batches are split to stay under it.</summary>
    public int MaxMessageBytes { get; set; } = DefaultMaxMessageBytes;

    /// <summary>Enabled collectors by name. Default: cpu, memory, disk, load and network every 10 s.</summary>
    public Dictionary<string, Collectors.CollectorSettings> Collectors { get; set; } = DefaultCollectors();

    /// <summary>Health probes run on their own intervals (and on demand by the health.check task).</summary>
    public List<Probes.ProbeSettings> Probes { get; set; } = [];

    /// <summary>How often collected samples are written to the outbox as one batch.</summary>
    public TimeSpan MetricsFlushInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The local policy (what tasks, paths, services and commands this host allows). Missing file = nothing.</summary>
    public string PolicyFile { get; set; } = Policy.LocalPolicy.DefaultPath;

    /// <summary>Task invocations that may execute at once (one per task name in any case).</summary>
    public int MaxConcurrentTasks { get; set; } = 2;

    /// <summary>PATH for the commands tasks run (null: the agent's own). Not in agent.json; tests and embedding hosts.</summary>
    public string? TaskCommandSearchPath { get; set; }

    /// <summary>On timeout or cancel a task's command gets SIGTERM, then after this SIGKILL of its process tree.</summary>
    public TimeSpan TaskKillGracePeriod { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Log sources to tail and ship (none by default).</summary>
    public Logs.LogSettings Logs { get; set; } = new();

    public static Dictionary<string, Collectors.CollectorSettings> DefaultCollectors() =>
        new[] { "cpu", "memory", "disk", "load", "network" }.ToDictionary(n => n, _ => new Collectors.CollectorSettings(), StringComparer.Ordinal);
}
