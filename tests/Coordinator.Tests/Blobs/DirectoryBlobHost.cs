using Fleet.Coordinator.Blobs;
using Fleet.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.Coordinator.Tests.Blobs;

/// <summary>
/// A Directory blob store behind a real Kestrel on a free loopback port, wired the way Program.cs does it
/// (<c>AddBlobs()</c> + <c>MapBlobs()</c>), with a fake clock for expiry tests.
/// </summary>
public sealed class DirectoryBlobHost : IAsyncLifetime
{
    readonly TempDirectory _temp = new();

    public FakeTimeProvider Time { get; } = new(DateTimeOffset.UtcNow);

    public WebApplication App { get; private set; } = null!;

    public DirectoryBlobStore Store => (DirectoryBlobStore)App.Services.GetRequiredService<IBlobStore>();

    public string BlobsDirectory => _temp.Combine("blobs");

    public async Task InitializeAsync()
    {
        var port = FreePort.Next();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = _temp.Path, EnvironmentName = "Testing" });
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Fleet:Blobs:Provider"] = "Directory",
            ["Fleet:Blobs:Directory"] = BlobsDirectory,
            ["Fleet:Blobs:PublicBaseUrl"] = $"http://127.0.0.1:{port}",
        });
        builder.Services.AddSingleton<TimeProvider>(Time);
        builder.AddBlobs();
        App = builder.Build();
        App.MapBlobs();
        await App.StartAsync().DefaultTimeout();
    }

    public async Task DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        _temp.Dispose();
    }
}
