namespace Fleet.Protocol;

/// <summary>Constants of the wire protocol shared by both sides.</summary>
public static class Wire
{
    /// <summary>The protocol version this build speaks (see fleet.v1.ProtocolVersion).</summary>
    public const uint ProtocolVersion = 1;

    /// <summary>Request header carrying the agent's protocol version, checked before the stream is accepted.</summary>
    public const string ProtocolVersionHeader = "fleet-protocol-version";

    /// <summary>Header naming the human behind an ops API call (fleetctl sends the OS user).</summary>
    public const string UserHeader = "x-fleet-user";
}
