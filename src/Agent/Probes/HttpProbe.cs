using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Fleet.Protocol.V1;

namespace Fleet.Agent.Probes;

/// <summary>
/// <c>http</c>: GET the URL on a fresh connection (like <c>curl -f</c>), expect a status (default any 2xx) and optionally
/// a body substring or regular expression. Latency is the time to the response headers. Redirects are not followed
/// unless <see cref="ProbeSettings.FollowRedirects"/>; certificates are verified unless
/// <see cref="ProbeSettings.SkipTlsVerification"/>.
/// </summary>
internal sealed class HttpProbe : IProbe, IDisposable
{
    /// <summary>At most this much of the body is read for matching.</summary>
    internal const int MaxBodyBytes = 1024 * 1024;

    static readonly TimeSpan RegexTimeout = TimeSpan.FromSeconds(1);
    static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    readonly ProbeSettings settings;
    readonly TimeProvider timeProvider;
    readonly Uri url;
    readonly Regex? bodyPattern;
    readonly HttpClient client;

    public HttpProbe(ProbeSettings settings, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(settings);
        this.settings = settings;
        this.timeProvider = timeProvider;
        if (settings.Url is null) throw ProbeSettingsError.Invalid(settings, "url", "is required");
        if (!settings.Url.IsAbsoluteUri || (settings.Url.Scheme != Uri.UriSchemeHttp && settings.Url.Scheme != Uri.UriSchemeHttps) || settings.Url.Host.Length == 0)
            throw ProbeSettingsError.Invalid(settings, "url", $"'{settings.Url}' is not an http:// or https:// URL");
        if (settings.ExpectedStatus is { } status && status is < 100 or > 599)
            throw ProbeSettingsError.Invalid(settings, "expectedStatus", $"{status} is not an HTTP status (100 to 599)");
        if (settings.BodyMatches is { } pattern)
        {
            try { bodyPattern = new Regex(pattern, RegexOptions.CultureInvariant, RegexTimeout); }
            catch (ArgumentException ex) { throw ProbeSettingsError.Invalid(settings, "bodyMatches", $"is not a valid regular expression: {ex.Message}"); }
        }
        url = settings.Url;
        Target = url.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped);

        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = settings.FollowRedirects,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.All,
        };
        if (settings.SkipTlsVerification)
        {
#pragma warning disable CA5359 // The operator's explicit opt-in for this one probe (skipTlsVerification, off by default).
            handler.SslOptions.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
#pragma warning restore CA5359
        }
        client = new HttpClient(handler) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
        client.DefaultRequestHeaders.UserAgent.ParseAdd("fleet-agent-probe");
    }

    public string Name => settings.Name;
    public string Kind => ProbeKinds.Http;

    /// <summary>The URL without user info and query (credentials and tokens in a URL are never reported).</summary>
    public string Target { get; }

    public ValueTask<ProbeResult> RunAsync(CancellationToken cancellationToken) =>
        ProbeExecution.RunAsync(this, settings.Timeout, timeProvider, CheckAsync, null, cancellationToken);

    public void Dispose() => client.Dispose();

    async ValueTask<string?> CheckAsync(ProbeCheck check)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.ConnectionClose = true;   // every run connects afresh, so a dead listener is never hidden by a pooled connection
        check.Stage = "waiting for the response";
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, check.CancellationToken);
        check.Answered();

        var status = (int)response.StatusCode;
        var statusOk = settings.ExpectedStatus is { } expected ? status == expected : status is >= 200 and <= 299;
        if (!statusOk)
        {
            var text = string.IsNullOrEmpty(response.ReasonPhrase) ? status.ToString(CultureInfo.InvariantCulture) : $"{status} {response.ReasonPhrase}";
            return $"status {text} (expected {(settings.ExpectedStatus is { } e ? e.ToString(CultureInfo.InvariantCulture) : "2xx")})";
        }
        if (settings.BodyContains is null && bodyPattern is null) return null;

        check.Stage = "reading the body";
        var body = await ReadBodyAsync(response.Content, check.CancellationToken);
        if (settings.BodyContains is { } needle && !body.Contains(needle, StringComparison.Ordinal))
            return $"body mismatch: does not contain \"{Shorten(needle)}\"";
        if (bodyPattern is not null)
        {
            try
            {
                if (!bodyPattern.IsMatch(body)) return $"body mismatch: does not match /{Shorten(bodyPattern.ToString())}/";
            }
            catch (RegexMatchTimeoutException)
            {
                return $"body mismatch: matching /{Shorten(bodyPattern.ToString())}/ took longer than {ProbeExecution.Format(RegexTimeout)}";
            }
        }
        return null;
    }

    static async Task<string> ReadBodyAsync(HttpContent content, CancellationToken cancellationToken)
    {
        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        using var body = new MemoryStream();
        var buffer = new byte[16 * 1024];
        while (body.Length < MaxBodyBytes)
        {
            var read = await stream.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, MaxBodyBytes - body.Length)), cancellationToken);
            if (read == 0) break;
            body.Write(buffer, 0, read);
        }
        return Utf8.GetString(body.GetBuffer(), 0, (int)body.Length);
    }

    static string Shorten(string text) => text.Length <= 80 ? text : text[..77] + "...";
}
