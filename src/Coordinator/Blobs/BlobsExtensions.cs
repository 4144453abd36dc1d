using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.StaticFiles;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Blobs;

public static class BlobsExtensions
{
    /// <summary>
    /// Binds <c>Fleet:Blobs</c> (validated when the host starts: a bad configuration fails the start naming the key),
    /// registers <see cref="IBlobStore"/> for the configured provider and opens it on start (Directory mode creates the
    /// folder and its URL-signing key then).
    /// </summary>
    public static IHostApplicationBuilder AddBlobs(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.TryAddSingleton(TimeProvider.System);
        services.AddOptions<BlobOptions>()
            .BindConfiguration(BlobOptions.SectionName)
            .PostConfigure<IConfiguration, IHostEnvironment>(ApplyDefaults)
            .ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<BlobOptions>, BlobOptionsValidator>());
        services.TryAddSingleton<IBlobStore>(CreateStore);
        services.AddHostedService<BlobStoreStartup>();
        return builder;
    }

    /// <summary>
    /// Directory mode: the presigned endpoint <c>PUT|GET /blobs/{key}?expires=..&amp;sig=..</c> (S3 mode: answers 404,
    /// since presigned URLs point at S3). Bodies are streamed both ways; uploads have no size limit.
    /// </summary>
    public static IEndpointRouteBuilder MapBlobs(this IEndpointRouteBuilder app)
    {
        app.MapMethods(DirectoryBlobStore.EndpointPrefix + "{**key}", [HttpMethods.Get, HttpMethods.Put], HandlePresignedAsync)
            .WithName("PresignedBlob")
            .AllowAnonymous() // the URL's signature is the authorization
            .ExcludeFromDescription();
        return app;
    }

    internal static void ApplyDefaults(BlobOptions options, IConfiguration configuration, IHostEnvironment environment)
    {
        var contentRoot = string.IsNullOrEmpty(environment.ContentRootPath) ? Directory.GetCurrentDirectory() : environment.ContentRootPath;
        if (string.IsNullOrWhiteSpace(options.Directory))
        {
            var dataDirectory = configuration["Fleet:DataDirectory"];
            if (string.IsNullOrWhiteSpace(dataDirectory)) dataDirectory = BlobOptions.DefaultDataDirectory;
            options.Directory = Path.Combine(dataDirectory, "blobs");
        }
        options.Directory = Path.GetFullPath(options.Directory, contentRoot);
        if (string.IsNullOrWhiteSpace(options.PublicBaseUrl)) options.PublicBaseUrl = BlobOptions.DefaultPublicBaseUrl;
    }

    static IBlobStore CreateStore(IServiceProvider sp)
    {
        var options = sp.GetRequiredService<IOptions<BlobOptions>>().Value;
        var time = sp.GetRequiredService<TimeProvider>();
        return options.Provider switch
        {
            BlobProvider.S3 => new S3BlobStore(options.S3, time, sp.GetRequiredService<ILogger<S3BlobStore>>()),
            _ => new DirectoryBlobStore(options.Directory!, new Uri(options.PublicBaseUrl!), time, sp.GetRequiredService<ILogger<DirectoryBlobStore>>()),
        };
    }

    static readonly FileExtensionContentTypeProvider ContentTypes = new();

    static async Task<IResult> HandlePresignedAsync(HttpContext context, string key)
    {
        if (context.RequestServices.GetRequiredService<IBlobStore>() is not DirectoryBlobStore store)
            return Results.Problem(statusCode: StatusCodes.Status404NotFound, title: "Not found",
                detail: "Blobs are not stored on the coordinator (Fleet:Blobs:Provider is not Directory); presigned URLs point at the object store.");

        var keyError = BlobKey.GetError(key, isPrefix: false)
                       ?? (key == DirectoryBlobStore.PresignKeyFileName ? "the name is reserved" : null);
        if (keyError is not null)
            return Results.Problem(statusCode: StatusCodes.Status400BadRequest, title: "Invalid blob key",
                detail: $"Invalid blob key {BlobKey.Describe(key)}: {keyError}.");

        var method = HttpMethods.IsPut(context.Request.Method) ? "PUT" : "GET";
        var query = context.Request.Query;
        if (store.CheckSignature(method, key, query["expires"], query["sig"]) is { } rejection)
            return Results.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Presigned URL rejected", detail: rejection);

        if (method == "PUT")
        {
            // Backups and archives can be large: lift Kestrel's 30 MB default for this (authenticated) request.
            if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
                limit.MaxRequestBodySize = null;
            try
            {
                await store.PutAsync(key, context.Request.Body, context.Request.ContentType, context.RequestAborted);
            }
            catch (BlobConflictException ex)
            {
                return Results.Problem(statusCode: StatusCodes.Status409Conflict, title: "Blob key conflict", detail: ex.Message);
            }
            return Results.Ok();
        }

        var file = store.OpenRead(key, out var info);
        if (file is null)
            return Results.Problem(statusCode: StatusCodes.Status404NotFound, title: "Blob not found", detail: $"There is no blob '{key}'.");
        if (!ContentTypes.TryGetContentType(key, out var contentType)) contentType = "application/octet-stream";
        // Results.File streams from the file (with Range support) and disposes it.
        return Results.File(file, contentType, lastModified: info.LastWriteTimeUtc, enableRangeProcessing: true);
    }

    /// <summary>Opens the store when the host starts, so a bad directory or missing permission fails the start.</summary>
    sealed class BlobStoreStartup(IServiceProvider services, IOptions<BlobOptions> options, ILogger<BlobStoreStartup> logger) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            var store = services.GetRequiredService<IBlobStore>();
            var o = options.Value;
            if (store is DirectoryBlobStore directory)
                logger.LogInformation("Blob store: directory {Directory}, presigned URLs under {BaseUrl}{Prefix}", directory.Root, o.PublicBaseUrl, DirectoryBlobStore.EndpointPrefix);
            else
                logger.LogInformation("Blob store: {S3}", o.S3); // S3BlobOptions.ToString never prints secrets
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
