using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Fleet.Protocol.V1;

namespace Fleet.Agent.Probes;

/// <summary>
/// <c>tls</c>: TLS handshake with host:port (SNI = host), then the server certificate's expiry as <c>tls.days_left</c>
/// (fractional days, negative once expired). Fails when the handshake fails, the certificate is not trusted for the host
/// (unless <see cref="ProbeSettings.SkipTlsVerification"/>), has expired, or expires in fewer than
/// <see cref="ProbeSettings.WarnDays"/> days; the reason then names the certificate's subject and issuer.
/// Latency is connect plus handshake.
/// </summary>
internal sealed class TlsProbe : IProbe
{
    public const string DaysLeft = "tls.days_left";

    readonly ProbeSettings settings;
    readonly TimeProvider timeProvider;
    readonly ProbeAddress address;

    public TlsProbe(ProbeSettings settings, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(settings);
        this.settings = settings;
        this.timeProvider = timeProvider;
        address = ProbeAddress.Parse(settings);
        if (settings.WarnDays < 0) throw ProbeSettingsError.Invalid(settings, "warnDays", $"{settings.WarnDays} must be 0 or more");
        Target = address.ToString();
    }

    public string Name => settings.Name;
    public string Kind => ProbeKinds.Tls;
    public string Target { get; }

    public ValueTask<ProbeResult> RunAsync(CancellationToken cancellationToken) =>
        ProbeExecution.RunAsync(this, settings.Timeout, timeProvider, CheckAsync, null, cancellationToken);

    async ValueTask<string?> CheckAsync(ProbeCheck check)
    {
        var token = check.CancellationToken;
        check.Stage = "while connecting";
        var socket = await address.ConnectAsync(token);
        await using var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);

        Certificate? certificate = null;
        var policyErrors = SslPolicyErrors.None;
        var chainProblems = "";
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = address.Host,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, presented, chain, errors) =>
            {
                certificate = Certificate.From(presented);
                policyErrors = errors;
                chainProblems = DescribeChain(chain);
                return errors == SslPolicyErrors.None || settings.SkipTlsVerification;
            },
        };

        check.Stage = "during the TLS handshake";
        string? handshakeFailure = null;
        try
        {
            await ssl.AuthenticateAsClientAsync(options, token);
            check.Answered();
        }
        catch (Exception ex) when (!token.IsCancellationRequested && ex is not OperationCanceledException)
        {
            handshakeFailure = ProbeErrors.Describe(ex);
        }

        if (certificate is null)
            return handshakeFailure is null ? "the server presented no certificate" : $"TLS handshake failed: {handshakeFailure}";

        var daysLeft = (certificate.NotAfter - timeProvider.GetUtcNow().UtcDateTime).TotalDays;
        check.Values[DaysLeft] = daysLeft;
        var expires = certificate.NotAfter.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture);
        var who = $"subject {certificate.Subject}, issuer {certificate.Issuer}";

        if (daysLeft < 0)
            return string.Create(CultureInfo.InvariantCulture, $"certificate expired {-daysLeft:0.#} days ago ({expires}); {who}");
        if (handshakeFailure is not null)
        {
            return policyErrors == SslPolicyErrors.None
                ? $"TLS handshake failed: {handshakeFailure}; {who}"
                : $"certificate not trusted for {address.Host}: {DescribePolicy(policyErrors, chainProblems)}; {who}";
        }
        if (daysLeft < settings.WarnDays)
            return string.Create(CultureInfo.InvariantCulture, $"certificate expires in {daysLeft:0.#} days ({expires}), fewer than {settings.WarnDays}; {who}");
        return null;
    }

    static string DescribePolicy(SslPolicyErrors errors, string chainProblems)
    {
        var parts = new List<string>(3);
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable)) parts.Add("no certificate");
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch)) parts.Add("name mismatch");
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateChainErrors))
            parts.Add(chainProblems.Length > 0 ? $"chain errors ({chainProblems})" : "chain errors");
        return string.Join(", ", parts);
    }

    static string DescribeChain(X509Chain? chain)
    {
        if (chain is null) return "";
        var flags = X509ChainStatusFlags.NoError;
        foreach (var status in chain.ChainStatus) flags |= status.Status;
        return flags == X509ChainStatusFlags.NoError ? "" : flags.ToString();
    }

    /// <summary>What the reason needs from the server certificate, copied inside the validation callback.</summary>
    sealed record Certificate(string Subject, string Issuer, DateTime NotAfter)
    {
        public static Certificate? From(X509Certificate? certificate) => certificate switch
        {
            X509Certificate2 c => new Certificate(c.Subject, c.Issuer, c.NotAfter.ToUniversalTime()),
            null => null,
            _ => new Certificate(certificate.Subject, certificate.Issuer,
                DateTime.Parse(certificate.GetExpirationDateString(), CultureInfo.CurrentCulture).ToUniversalTime()),
        };
    }
}
