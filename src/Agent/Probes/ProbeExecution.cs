using System.Globalization;
using System.Net.Sockets;
using System.Security.Authentication;
using Fleet.Protocol.V1;
using Google.Protobuf.Collections;

namespace Fleet.Agent.Probes;

/// <summary>One run of a probe as its check sees it: the token (caller + timeout), the values to report, the latency mark
/// and the stage it is in (named in the reason when the run times out).</summary>
internal sealed class ProbeCheck(MapField<string, double> values, TimeProvider timeProvider, long startedAt, CancellationToken cancellationToken)
{
    TimeSpan? answeredAfter;

    /// <summary>Cancelled when the caller cancels or the probe's timeout passes.</summary>
    public CancellationToken CancellationToken { get; } = cancellationToken;

    public MapField<string, double> Values { get; } = values;

    /// <summary>What the check is doing, phrased to follow "timed out after 5 s", e.g. "while connecting".</summary>
    public string Stage { get; set; } = "";

    /// <summary>Marks the moment the service answered the check; the reported latency. Later calls are ignored.
    /// Without a mark the latency is the whole run.</summary>
    public void Answered() => answeredAfter ??= timeProvider.GetElapsedTime(startedAt);

    internal TimeSpan Latency => answeredAfter ?? timeProvider.GetElapsedTime(startedAt);
}

/// <summary>
/// What every probe shares: the timeout (a <see cref="CancellationTokenSource"/> on the injected <see cref="TimeProvider"/>,
/// linked to the caller's token), latency, and turning every failure into a result with a reason.
/// </summary>
internal static class ProbeExecution
{
    /// <param name="check">Returns null when healthy, else the reason; may throw, the exception becomes the reason.</param>
    /// <param name="describe">Probe-specific description of an exception; null falls back to <see cref="ProbeErrors.Describe"/>.</param>
    public static async ValueTask<ProbeResult> RunAsync(
        IProbe probe, TimeSpan timeout, TimeProvider timeProvider,
        Func<ProbeCheck, ValueTask<string?>> check, Func<Exception, string?>? describe,
        CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var result = new ProbeResult
        {
            Name = probe.Name,
            Kind = probe.Kind,
            Target = probe.Target,
            TimeUnixMs = timeProvider.GetUtcNow().ToUnixTimeMilliseconds(),
        };
        var startedAt = timeProvider.GetTimestamp();
        using var timeoutSource = new CancellationTokenSource(timeout, timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutSource.Token);
        var run = new ProbeCheck(result.Values, timeProvider, startedAt, linked.Token);

        string? failure;
        try
        {
            failure = await check(run);
        }
        catch (Exception) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("The probe run was cancelled.", cancellationToken);
        }
        catch (Exception) when (timeoutSource.IsCancellationRequested)
        {
            failure = $"timed out after {Format(timeout)}{(run.Stage.Length > 0 ? " " + run.Stage : "")}";
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            failure = describe?.Invoke(ex) ?? ProbeErrors.Describe(ex);
        }

        result.LatencyMs = run.Latency.TotalMilliseconds;
        result.Ok = failure is null;
        result.Reason = failure ?? "";
        return result;
    }

    /// <summary>"200 ms", "5 s", "1.5 s", "2 min".</summary>
    internal static string Format(TimeSpan duration) => duration switch
    {
        { TotalSeconds: < 1 } => string.Create(CultureInfo.InvariantCulture, $"{duration.TotalMilliseconds:0.#} ms"),
        { TotalMinutes: >= 1 } when duration.Seconds == 0 && duration.Milliseconds == 0 => string.Create(CultureInfo.InvariantCulture, $"{duration.TotalMinutes:0.#} min"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{duration.TotalSeconds:0.###} s"),
    };
}

/// <summary>Operator-readable reasons for the exceptions network checks end with.</summary>
internal static class ProbeErrors
{
    public static string Describe(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case SocketException socket: return Describe(socket);
                case AuthenticationException tls: return "TLS error: " + tls.Message;
            }
        }
        return exception switch
        {
            HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded } => "the server closed the connection without a response",
            HttpRequestException { HttpRequestError: HttpRequestError.InvalidResponse } => "invalid HTTP response: " + exception.Message,
            EndOfStreamException => "the server closed the connection",
            _ => exception.Message,
        };
    }

    public static string Describe(SocketException exception) => exception.SocketErrorCode switch
    {
        SocketError.ConnectionRefused => "connection refused",
        SocketError.HostNotFound => "host not found",
        SocketError.NoData => "host name has no address",
        SocketError.TryAgain => "host name lookup failed (temporary DNS failure)",
        SocketError.TimedOut => "connect timed out",
        SocketError.HostUnreachable => "host unreachable",
        SocketError.NetworkUnreachable => "network unreachable",
        SocketError.ConnectionReset => "connection reset by the server",
        SocketError.ConnectionAborted or SocketError.Shutdown => "connection aborted",
        SocketError.AddressNotAvailable => "address not available",
        _ => exception.Message,
    };
}

/// <summary>A "host:port" from <see cref="ProbeSettings.Address"/>.</summary>
internal readonly record struct ProbeAddress(string Host, int Port)
{
    public override string ToString() => Host.Contains(':', StringComparison.Ordinal)
        ? string.Create(CultureInfo.InvariantCulture, $"[{Host}]:{Port}")
        : string.Create(CultureInfo.InvariantCulture, $"{Host}:{Port}");

    public static ProbeAddress Parse(ProbeSettings settings)
    {
        var text = settings.Address;
        if (string.IsNullOrWhiteSpace(text)) throw ProbeSettingsError.Invalid(settings, "address", "is required (host:port)");
        text = text.Trim();
        var colon = text.LastIndexOf(':');
        string host;
        if (text.StartsWith('['))
        {
            var close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || close + 1 != colon) throw ProbeSettingsError.Invalid(settings, "address", $"'{text}' is not host:port (IPv6: [::1]:port)");
            host = text[1..close];
        }
        else
        {
            if (colon <= 0 || text.IndexOf(':', StringComparison.Ordinal) != colon)
                throw ProbeSettingsError.Invalid(settings, "address", $"'{text}' is not host:port (IPv6: [::1]:port)");
            host = text[..colon];
        }
        if (host.Length == 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            throw ProbeSettingsError.Invalid(settings, "address", $"'{text}' is not host:port with a port from 1 to 65535");
        return new ProbeAddress(host, port);
    }

    /// <summary>Connects a TCP socket (every address of the host in turn), Nagle off.</summary>
    public async Task<Socket> ConnectAsync(CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(Host, Port, cancellationToken);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}

internal static class ProbeSettingsError
{
    public static ArgumentException Invalid(ProbeSettings settings, string key, string problem) =>
        new($"probe '{settings.Name}' ({settings.Kind}): key '{key}' {problem}");
}
