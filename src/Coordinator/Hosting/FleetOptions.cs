using System.ComponentModel.DataAnnotations;

namespace Fleet.Coordinator.Hosting;

/// <summary>Process-wide settings (section "Fleet").</summary>
public sealed class FleetOptions
{
    public const string Section = "Fleet";

    /// <summary>Where embedded state lives: the SQLite database, blobs, the embedded agent's state.</summary>
    [Required]
    public string DataDirectory { get; set; } = "fleet-data";

    /// <summary>This replica's name in presence and routing; defaults to hostname-pid.</summary>
    [RegularExpression("^[A-Za-z0-9._-]{1,64}$", ErrorMessage = "Fleet:ReplicaId must be 1-64 characters of letters, digits, '.', '_' or '-'.")]
    public string? ReplicaId { get; set; }

    public string EffectiveReplicaId => ReplicaId ?? $"{Environment.MachineName}-{Environment.ProcessId}";
}

/// <summary>Where the coordinator listens (section "Fleet:Listen").</summary>
public sealed class ListenOptions
{
    public const string Section = "Fleet:Listen";

    /// <summary>Bind address. Loopback by default: until authentication exists nothing should be exposed by accident.</summary>
    [Required]
    public string Address { get; set; } = "127.0.0.1";

    /// <summary>REST (HTTP/1.1): /api/v1, /healthz, /readyz, dashboard.</summary>
    [Range(0, 65535)]
    public int RestPort { get; set; } = 5080;

    /// <summary>gRPC (HTTP/2 cleartext): the agent stream and the ops API.</summary>
    [Range(0, 65535)]
    public int GrpcPort { get; set; } = 5081;
}
