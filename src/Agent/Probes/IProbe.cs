using Fleet.Protocol.V1;

namespace Fleet.Agent.Probes;

/// <summary>
/// One health check of a service the host depends on (the runbook's <c>curl -f</c>, <c>psql -c "SELECT 1"</c>,
/// <c>redis-cli ping</c>, certificate expiry). Created by <see cref="ProbeRegistry"/>, run by <see cref="ProbeRunner"/>.
/// </summary>
public interface IProbe
{
    /// <summary>The probe's name in the agent config.</summary>
    string Name { get; }

    /// <summary>http | tcp | postgres | redis | tls.</summary>
    string Kind { get; }

    /// <summary>What is probed, without secrets (a URL, host:port, host:port/database).</summary>
    string Target { get; }

    /// <summary>
    /// Runs the check once within the probe's timeout. Never throws for a failing service: failures are results with
    /// <c>ok=false</c> and a reason. Throws <see cref="OperationCanceledException"/> only when
    /// <paramref name="cancellationToken"/> is cancelled.
    /// </summary>
    ValueTask<ProbeResult> RunAsync(CancellationToken cancellationToken);
}
