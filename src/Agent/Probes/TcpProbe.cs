using Fleet.Protocol.V1;

namespace Fleet.Agent.Probes;

/// <summary><c>tcp</c>: connects to host:port; latency is the connect time.</summary>
internal sealed class TcpProbe : IProbe
{
    readonly ProbeSettings settings;
    readonly ProbeAddress address;
    readonly TimeProvider timeProvider;

    public TcpProbe(ProbeSettings settings, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(settings);
        this.settings = settings;
        this.timeProvider = timeProvider;
        address = ProbeAddress.Parse(settings);
        Target = address.ToString();
    }

    public string Name => settings.Name;
    public string Kind => ProbeKinds.Tcp;
    public string Target { get; }

    public ValueTask<ProbeResult> RunAsync(CancellationToken cancellationToken) =>
        ProbeExecution.RunAsync(this, settings.Timeout, timeProvider, CheckAsync, null, cancellationToken);

    async ValueTask<string?> CheckAsync(ProbeCheck check)
    {
        check.Stage = "while connecting";
        using var socket = await address.ConnectAsync(check.CancellationToken);
        check.Answered();
        return null;
    }
}
