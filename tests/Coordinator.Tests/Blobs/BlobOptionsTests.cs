using Fleet.Coordinator.Blobs;
using Fleet.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Tests.Blobs;

/// <summary><c>AddBlobs()</c> on a plain host: defaults, and a bad configuration failing the start naming its key.</summary>
public sealed class BlobOptionsTests : IDisposable
{
    readonly TempDirectory _root = new();

    public void Dispose() => _root.Dispose();

    IHost Build(Dictionary<string, string?> settings)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            ContentRootPath = _root.Path,
            EnvironmentName = "Testing",
            DisableDefaults = true,
        });
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(settings);
        builder.AddBlobs();
        return builder.Build();
    }

    async Task<string> StartFailure(Dictionary<string, string?> settings)
    {
        using var host = Build(settings);
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        return ex.Message;
    }

    [Fact]
    public async Task Defaults_to_a_directory_under_fleet_data_in_the_content_root()
    {
        using var host = Build([]);
        await host.StartAsync();

        var options = host.Services.GetRequiredService<IOptions<BlobOptions>>().Value;
        var store = Assert.IsType<DirectoryBlobStore>(host.Services.GetRequiredService<IBlobStore>());
        Assert.Equal(BlobProvider.Directory, options.Provider);
        Assert.Equal(_root.Combine("fleet-data", "blobs"), store.Root);
        Assert.Equal("http://127.0.0.1:5080", options.PublicBaseUrl);
        Assert.True(File.Exists(_root.Combine("fleet-data", "blobs", ".presign-key")), "the signing key is created on start");
        Assert.StartsWith("http://127.0.0.1:5080/blobs/a.bin?", store.PresignDownload("a.bin", TimeSpan.FromMinutes(1)).AbsoluteUri);
        await host.StopAsync();
    }

    [Fact]
    public async Task The_default_directory_follows_Fleet_DataDirectory()
    {
        using var host = Build(new() { ["Fleet:DataDirectory"] = "var/data" });
        await host.StartAsync();

        Assert.Equal(_root.Combine("var", "data", "blobs"), ((DirectoryBlobStore)host.Services.GetRequiredService<IBlobStore>()).Root);
        await host.StopAsync();
    }

    [Fact]
    public async Task S3_without_a_bucket_fails_the_start_naming_the_key()
    {
        var message = await StartFailure(new()
        {
            ["Fleet:Blobs:Provider"] = "S3",
            ["Fleet:Blobs:S3:ServiceUrl"] = "http://127.0.0.1:9",
        });
        Assert.Contains("Fleet:Blobs:S3:Bucket", message);
    }

    [Fact]
    public async Task S3_without_service_url_or_region_fails_the_start_naming_both_keys()
    {
        var message = await StartFailure(new()
        {
            ["Fleet:Blobs:Provider"] = "S3",
            ["Fleet:Blobs:S3:Bucket"] = "backups",
            ["Fleet:Blobs:S3:Region"] = "",
        });
        Assert.Contains("Fleet:Blobs:S3:ServiceUrl", message);
        Assert.Contains("Fleet:Blobs:S3:Region", message);
        Assert.DoesNotContain("Fleet:Blobs:S3:Bucket", message);
    }

    [Fact]
    public async Task Every_problem_is_reported_at_once_and_secrets_are_never_echoed()
    {
        var message = await StartFailure(new()
        {
            ["Fleet:Blobs:Provider"] = "S3",
            ["Fleet:Blobs:S3:ServiceUrl"] = "ftp://example",
            ["Fleet:Blobs:S3:Bucket"] = "Not_A_Bucket",
            ["Fleet:Blobs:S3:SecretKey"] = "very-secret-value",
            ["Fleet:Blobs:S3:KeyPrefix"] = "/fleet/",
        });
        Assert.Contains("Fleet:Blobs:S3:ServiceUrl", message);
        Assert.Contains("Fleet:Blobs:S3:Bucket", message);
        Assert.Contains("Fleet:Blobs:S3:AccessKey", message);
        Assert.Contains("Fleet:Blobs:S3:KeyPrefix", message);
        Assert.DoesNotContain("very-secret-value", message);
    }

    [Fact]
    public async Task A_bad_public_base_url_fails_the_start_naming_the_key()
    {
        var message = await StartFailure(new() { ["Fleet:Blobs:PublicBaseUrl"] = "coordinator:5080" });
        Assert.Contains("Fleet:Blobs:PublicBaseUrl", message);
    }

    [Fact]
    public async Task A_valid_S3_configuration_registers_the_S3_store()
    {
        using var host = Build(new()
        {
            ["Fleet:Blobs:Provider"] = "S3",
            ["Fleet:Blobs:S3:ServiceUrl"] = "http://127.0.0.1:9",
            ["Fleet:Blobs:S3:Bucket"] = "backups",
            ["Fleet:Blobs:S3:AccessKey"] = "AK",
            ["Fleet:Blobs:S3:SecretKey"] = "SK-secret",
            ["Fleet:Blobs:S3:ForcePathStyle"] = "true",
            ["Fleet:Blobs:S3:CompatibilityMode"] = "true",
        });
        await host.StartAsync(); // no network on start

        var store = Assert.IsType<S3BlobStore>(host.Services.GetRequiredService<IBlobStore>());
        Assert.StartsWith("http://127.0.0.1:9/backups/x.bin?", store.PresignDownload("x.bin", TimeSpan.FromMinutes(1)).AbsoluteUri);
        Assert.DoesNotContain("SK-secret", host.Services.GetRequiredService<IOptions<BlobOptions>>().Value.S3.ToString());
        await host.StopAsync();
    }
}
