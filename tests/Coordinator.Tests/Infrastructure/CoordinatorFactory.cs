using Fleet.Testing;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Fleet.Coordinator.Tests.Infrastructure;

public enum Store { Sqlite, Postgres }

/// <summary>
/// The coordinator in process (TestServer) on real storage: SQLite in a temp directory or the harness's PostgreSQL,
/// optionally with the harness's Redis. No ports are bound.
/// </summary>
public sealed class CoordinatorFactory : WebApplicationFactory<Program>
{
    readonly Dictionary<string, string?> settings = new();
    readonly TempDirectory data = new();
    TimeProvider? time;

    public CoordinatorFactory(Store store, string? postgresConnectionString = null, bool redis = false)
    {
        settings["Fleet:DataDirectory"] = data.Path;
        settings["Fleet:EmbeddedAgent:Enabled"] = "false";
        settings["Fleet:Blobs:Directory"] = data.Combine("blobs");
        // The runbook's default windows (and their audit rows) only where a test asks for them.
        settings["Fleet:Schedules:LoadDefaults"] = "false";
        if (store == Store.Postgres)
            settings["ConnectionStrings:Postgres"] = postgresConnectionString ?? throw new ArgumentNullException(nameof(postgresConnectionString));
        if (redis)
        {
            settings["ConnectionStrings:Redis"] = TestServices.Redis;
            settings["Fleet:Redis:KeyPrefix"] = TestServices.UniqueName("fleet") + ":";
        }
    }

    public string DataDirectory => data.Path;

    /// <summary>
    /// The exception the coordinator's start fails with (bad configuration). WebApplicationFactory can lose it: the app's
    /// own thread fails its start and disposes the host while the test thread's DeferredHost.StartAsync has yet to read the
    /// host's IHostApplicationLifetime, which then throws ObjectDisposedException instead (seen in a CI loop; the same
    /// race as dotnet/aspnetcore#33494). Then the start is tried again with a new factory from <paramref name="create"/>,
    /// at most three times; any other outcome is returned as it is.
    /// </summary>
    public static Exception StartFailure(Func<CoordinatorFactory> create)
    {
        for (var attempt = 1; ; attempt++)
        {
            using var factory = create();
            var error = Assert.ThrowsAny<Exception>(() => factory.Server);
            var lost = error is ObjectDisposedException && (error.StackTrace ?? "").Contains("DeferredHost", StringComparison.Ordinal);
            if (!lost || attempt == 3) return error;
        }
    }

    public CoordinatorFactory With(string key, string? value)
    {
        settings[key] = value;
        return this;
    }

    public CoordinatorFactory WithTime(TimeProvider timeProvider)
    {
        time = timeProvider;
        return this;
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        foreach (var (key, value) in settings)
            builder.UseSetting(key, value);
        builder.ConfigureTestServices(services =>
        {
            if (time is not null)
                services.Replace(ServiceDescriptor.Singleton(time));
        });
    }

    /// <summary>A gRPC channel into the in-process server (HTTP/2 over the TestServer handler).</summary>
    public GrpcChannel Channel(string? user = null)
    {
        var handler = Server.CreateHandler();
        return GrpcChannel.ForAddress(Server.BaseAddress, new GrpcChannelOptions
        {
            HttpHandler = user is null ? handler : new UserHeaderHandler(user) { InnerHandler = handler },
        });
    }

    /// <summary>A handler factory for a real <c>CoordinatorConnection</c> (the agent's transport) into this server.</summary>
    public Func<HttpMessageHandler> AgentHandler => () => Server.CreateHandler();

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) data.Dispose();
    }

    sealed class UserHeaderHandler(string user) : DelegatingHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            request.Headers.TryAddWithoutValidation(Protocol.Wire.UserHeader, user);
            return base.SendAsync(request, cancellationToken);
        }
    }
}
