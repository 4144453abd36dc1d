using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Fleet.Agent.Probes;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.Extensions.Logging;

namespace Fleet.Agent.Tests.Probes;

internal static class ProbeTesting
{
    public static IProbe Create(ProbeSettings settings, TimeProvider? timeProvider = null) =>
        ProbeRegistry.Default.Create(settings, timeProvider ?? TimeProvider.System);

    /// <summary>Creates, runs once with a deadline, disposes.</summary>
    public static async Task<ProbeResult> RunOnceAsync(ProbeSettings settings)
    {
        var probe = Create(settings);
        try
        {
            return await probe.RunAsync(CancellationToken.None).AsTask().DefaultTimeout();
        }
        finally
        {
            switch (probe)
            {
                case IAsyncDisposable asyncDisposable: await asyncDisposable.DisposeAsync(); break;
                case IDisposable disposable: disposable.Dispose(); break;
            }
        }
    }

    /// <summary>A loopback port with nothing listening on it.</summary>
    public static int ClosedPort() => FreePort.Next();
}

/// <summary>Keeps every formatted log line (and exception) so tests can check what reached the logs.</summary>
internal sealed class CapturingLogger<T> : ILogger<T>
{
    readonly ConcurrentQueue<string> lines = new();

    public IReadOnlyCollection<string> Lines => lines;

    public string All => string.Join('\n', lines);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        lines.Enqueue($"{logLevel}: {formatter(state, exception)}{(exception is null ? "" : "\n" + exception)}");
}

/// <summary>HTTP server on a free loopback port: /ok (200), /fail (500), /slow (answers only at dispose),
/// /body (200 with a JSON body), /redirect (302 to /ok).</summary>
internal sealed class TestHttpServer : IAsyncDisposable
{
    public const string Body = "{\"status\":\"up\",\"version\":\"1.4.2\"}";

    readonly HttpListener listener = new();
    readonly TaskCompletionSource release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly Task loop;

    public TestHttpServer()
    {
        Port = FreePort.Next();
        listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        listener.Start();
        loop = AcceptAsync();
    }

    public int Port { get; }

    /// <summary>Completes when a request for /slow has arrived.</summary>
    public TaskCompletionSource SlowRequestArrived { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Uri Url(string path) => new($"http://127.0.0.1:{Port}{path}");

    async Task AcceptAsync()
    {
        while (listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await listener.GetContextAsync(); }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            _ = HandleAsync(context);
        }
    }

    async Task HandleAsync(HttpListenerContext context)
    {
        var response = context.Response;
        try
        {
            switch (context.Request.Url?.AbsolutePath)
            {
                case "/ok": await WriteAsync(response, 200, "ok"); break;
                case "/fail": await WriteAsync(response, 500, "boom"); break;
                case "/body": await WriteAsync(response, 200, Body); break;
                case "/redirect":
                    response.RedirectLocation = "/ok";
                    await WriteAsync(response, 302, "");
                    break;
                case "/slow":
                    SlowRequestArrived.TrySetResult();
                    await release.Task;
                    await WriteAsync(response, 200, "late");
                    break;
                default: await WriteAsync(response, 404, "not found"); break;
            }
        }
        catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or IOException or InvalidOperationException)
        {
            // The client gave up (a probe that timed out): nothing to answer.
        }
    }

    static async Task WriteAsync(HttpListenerResponse response, int status, string body)
    {
        var bytes = Encoding.UTF8.GetBytes(body);
        response.StatusCode = status;
        response.ContentLength64 = bytes.Length;
        await response.OutputStream.WriteAsync(bytes);
        response.Close();
    }

    public async ValueTask DisposeAsync()
    {
        release.TrySetResult();
        listener.Close();
        await loop.DefaultTimeout();
    }
}

/// <summary>TLS server on a loopback port with the given certificate. After the handshake it answers an HTTP request
/// with 200 "ok" (so the http probe can use it too); a client that only handshakes is fine.</summary>
internal sealed class TlsTestServer : IAsyncDisposable
{
    readonly TcpListener listener = new(IPAddress.Loopback, 0);
    readonly X509Certificate2 certificate;
    readonly Task loop;

    public TlsTestServer(X509Certificate2 certificate)
    {
        this.certificate = certificate;
        listener.Start();
        loop = AcceptAsync();
    }

    public int Port => ((IPEndPoint)listener.LocalEndpoint).Port;

    public string Address => $"127.0.0.1:{Port}";

    async Task AcceptAsync()
    {
        while (true)
        {
            TcpClient client;
            try { client = await listener.AcceptTcpClientAsync(); }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException) { return; }
            _ = ServeAsync(client);
        }
    }

    async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                await using var ssl = new SslStream(client.GetStream());
                await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = certificate }).DefaultTimeout();
                var request = new StringBuilder();
                var buffer = new byte[4096];
                while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var read = await ssl.ReadAsync(buffer).AsTask().DefaultTimeout();
                    if (read == 0) return;
                    request.Append(Encoding.ASCII.GetString(buffer, 0, read));
                }
                await ssl.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"u8.ToArray());
                await ssl.FlushAsync();
            }
            catch (Exception ex) when (ex is IOException or System.Security.Authentication.AuthenticationException or ObjectDisposedException or TimeoutException)
            {
                // A probe that only handshakes, or rejects the certificate, hangs up: expected.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        listener.Stop();
        await loop.DefaultTimeout();
        certificate.Dispose();
    }
}

/// <summary>Accepts TCP connections and never answers (or answers with fixed bytes): a hung or non-TLS service.</summary>
internal sealed class SilentServer : IAsyncDisposable
{
    readonly TcpListener listener = new(IPAddress.Loopback, 0);
    readonly byte[]? answer;
    readonly List<TcpClient> clients = [];
    readonly Task loop;

    public SilentServer(byte[]? answer = null)
    {
        this.answer = answer;
        listener.Start();
        loop = AcceptAsync();
    }

    public string Address => $"127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}";

    /// <summary>Completes when the first connection has been accepted.</summary>
    public TaskCompletionSource Accepted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>A silent server: completes when a client has sent its first bytes (which are never answered).</summary>
    public TaskCompletionSource Received { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    async Task AcceptAsync()
    {
        while (true)
        {
            TcpClient client;
            try { client = await listener.AcceptTcpClientAsync(); }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException) { return; }
            lock (clients) clients.Add(client);
            if (answer is not null)
            {
                try
                {
                    await client.GetStream().WriteAsync(answer);
                    client.Client.Shutdown(SocketShutdown.Both);
                }
                catch (Exception ex) when (ex is IOException or SocketException) { }
            }
            else
            {
                _ = ReadFirstBytesAsync(client);
            }
            Accepted.TrySetResult();
        }
    }

    async Task ReadFirstBytesAsync(TcpClient client)
    {
        var buffer = new byte[256];
        try
        {
            if (await client.GetStream().ReadAsync(buffer) > 0) Received.TrySetResult();
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException) { }
    }

    public async ValueTask DisposeAsync()
    {
        listener.Stop();
        await loop.DefaultTimeout();
        lock (clients) foreach (var client in clients) client.Dispose();
    }
}

internal static class TestCertificates
{
    /// <summary>A self-signed server certificate for 127.0.0.1 and localhost, with its private key, valid in [notBefore, notAfter].</summary>
    public static X509Certificate2 SelfSigned(DateTimeOffset notBefore, DateTimeOffset notAfter, string commonName = "fleet-probe-test")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}, O=Fleet Tests", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var certificate = request.CreateSelfSigned(notBefore, notAfter);
        // Through PKCS#12 so the key is usable by SslStream on every platform.
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
    }

    public static X509Certificate2 ExpiringIn(TimeSpan left) =>
        SelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow + left);
}
