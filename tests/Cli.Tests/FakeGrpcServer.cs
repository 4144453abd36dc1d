using System.Net;
using Fleet.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Fleet.Cli.Tests;

/// <summary>
/// A real loopback gRPC server (Kestrel, plaintext HTTP/2 unless told otherwise) standing in for the coordinator:
/// each feature's fake names the service instances it serves (<see cref="Serve{T}"/>) and starts it with <see cref="ListenAsync"/>.
/// </summary>
public abstract class FakeGrpcServer : IAsyncDisposable
{
    private readonly List<Action<IServiceCollection>> _registrations = [];
    private readonly List<Action<WebApplication>> _mappings = [];
    private WebApplication? _app;

    public Uri Address { get; private set; } = null!;

    /// <summary>The address as an operator would type it (no trailing slash).</summary>
    public string Url => Address.GetLeftPart(UriPartial.Authority);

    /// <summary>Serves <paramref name="service"/> (one instance for every call, so tests can read what it received).</summary>
    protected T Serve<T>(T service) where T : class
    {
        _registrations.Add(services => services.AddSingleton(service));
        _mappings.Add(app => app.MapGrpcService<T>());
        return service;
    }

    /// <param name="grpc">false: an HTTP server that answers nothing as gRPC (for failure tests).</param>
    protected async Task ListenAsync(HttpProtocols protocols = HttpProtocols.Http2, bool grpc = true)
    {
        for (var attempt = 1; ; attempt++)
        {
            var port = FreePort.Next();
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port, listen => listen.Protocols = protocols));
            builder.Services.AddGrpc();
            foreach (var register in _registrations) register(builder.Services);
            var app = builder.Build();
            if (grpc)
            {
                foreach (var map in _mappings) map(app);
            }
            try
            {
                await app.StartAsync();
                _app = app;
                Address = new Uri($"http://127.0.0.1:{port}");
                return;
            }
            catch (IOException) when (attempt < 5)
            {
                // Someone took the free port between probing and binding; try another.
                await app.DisposeAsync();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is null) return;
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
