using System.Net.Sockets;
using Fleet.Protocol.V1;

namespace Fleet.Agent.Probes;

/// <summary>
/// <c>redis</c>: speaks RESP over a fresh TCP connection: optional <c>AUTH [username] password</c>, <c>PING</c> (must
/// answer <c>PONG</c>; latency is connect + AUTH + PING), then <c>INFO memory</c> and <c>INFO stats</c> (pipelined) for the
/// values in <see cref="RedisInfo"/>. An INFO the server refuses (renamed or forbidden command) leaves the values out
/// but does not fail the probe: PING already answered. The password is never logged or reported.
/// </summary>
internal sealed class RedisProbe : IProbe
{
    readonly ProbeSettings settings;
    readonly TimeProvider timeProvider;
    readonly ProbeAddress address;

    public RedisProbe(ProbeSettings settings, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(settings);
        this.settings = settings;
        this.timeProvider = timeProvider;
        address = ProbeAddress.Parse(settings);
        if (settings.Username is not null && string.IsNullOrEmpty(settings.Password))
            throw ProbeSettingsError.Invalid(settings, "username", "needs a password");
        Target = address.ToString();
    }

    public string Name => settings.Name;
    public string Kind => ProbeKinds.Redis;
    public string Target { get; }

    public ValueTask<ProbeResult> RunAsync(CancellationToken cancellationToken) =>
        ProbeExecution.RunAsync(this, settings.Timeout, timeProvider, CheckAsync, null, cancellationToken);

    async ValueTask<string?> CheckAsync(ProbeCheck check)
    {
        var token = check.CancellationToken;
        check.Stage = "while connecting";
        var socket = await address.ConnectAsync(token);
        await using var stream = new NetworkStream(socket, ownsSocket: true);
        var redis = new RespConnection(stream);

        if (!string.IsNullOrEmpty(settings.Password))
        {
            check.Stage = "waiting for the AUTH reply";
            await redis.SendAsync(settings.Username is { } user ? ["AUTH", user, settings.Password] : ["AUTH", settings.Password], token);
            var auth = await redis.ReadAsync(token);
            if (auth.IsError) return $"AUTH failed: {auth.Text}";
        }

        check.Stage = "waiting for PONG";
        await redis.SendAsync(["PING"], token);
        var pong = await redis.ReadAsync(token);
        check.Answered();
        if (pong.IsError) return $"PING failed: {pong.Text}";
        if (pong.Text != "PONG") return $"PING answered '{pong.Text}' instead of PONG";

        check.Stage = "waiting for INFO";
        await redis.SendAsync([["INFO", "memory"], ["INFO", "stats"]], token);
        var memory = await redis.ReadAsync(token);
        var stats = await redis.ReadAsync(token);
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var reply in (ReadOnlySpan<RespReply>)[memory, stats])
        {
            if (reply is { IsError: false, Text: { } text })
                foreach (var (key, value) in RedisInfo.Parse(text)) fields[key] = value;
        }
        RedisInfo.AddValues(fields, check.Values);
        return null;
    }
}
