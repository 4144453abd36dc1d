using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Blobs;

public enum BlobProvider
{
    /// <summary>Files under a local directory; presigned URLs are served by the coordinator (<see cref="BlobsExtensions.MapBlobs"/>).</summary>
    Directory,

    /// <summary>An S3-compatible object store (AWS S3, MinIO, s3rver with <see cref="S3BlobOptions.CompatibilityMode"/>).</summary>
    S3,
}

/// <summary>Configuration section <c>Fleet:Blobs</c>.</summary>
public sealed class BlobOptions
{
    public const string SectionName = "Fleet:Blobs";

    public BlobProvider Provider { get; set; } = BlobProvider.Directory;

    /// <summary>Directory-mode root. Default: <c>{Fleet:DataDirectory}/blobs</c> (Fleet:DataDirectory defaults to "fleet-data");
    /// relative paths are resolved against the content root.</summary>
    public string? Directory { get; set; }

    /// <summary>Base URL of the coordinator's HTTP endpoint, used in Directory-mode presigned URLs. Default <see cref="DefaultPublicBaseUrl"/>.</summary>
    public string? PublicBaseUrl { get; set; }

    public S3BlobOptions S3 { get; set; } = new();

    public const string DefaultPublicBaseUrl = "http://127.0.0.1:5080";
    public const string DefaultDataDirectory = "fleet-data";
}

/// <summary>Configuration section <c>Fleet:Blobs:S3</c>.</summary>
public sealed class S3BlobOptions
{
    /// <summary>Endpoint of an S3-compatible server, e.g. "http://127.0.0.1:9000". Empty for AWS (then <see cref="Region"/> picks the endpoint).</summary>
    public string? ServiceUrl { get; set; }

    public string? Region { get; set; } = "us-east-1";

    public string? Bucket { get; set; }

    /// <summary>With <see cref="SecretKey"/>; both empty uses the SDK's default credential chain (environment, instance profile…).</summary>
    public string? AccessKey { get; set; }

    public string? SecretKey { get; set; }

    /// <summary>Path-style addressing (http://host/bucket/key); MinIO and s3rver need it.</summary>
    public bool ForcePathStyle { get; set; }

    /// <summary>
    /// For servers such as s3rver that store AWSSDK v4's <c>aws-chunked</c> request bodies verbatim (corrupt objects
    /// that look like success): checksums only when required and no chunk encoding. Real S3 and MinIO do not need it.
    /// </summary>
    public bool CompatibilityMode { get; set; }

    /// <summary>Prepended to every key in the bucket (e.g. "fleet/"); keys given to and returned by the store exclude it.</summary>
    public string? KeyPrefix { get; set; }

    // Never print secrets, whatever logs or serialises this object's string form.
    public override string ToString() =>
        $"S3(ServiceUrl={ServiceUrl ?? "(AWS)"}, Region={Region}, Bucket={Bucket}, ForcePathStyle={ForcePathStyle}, CompatibilityMode={CompatibilityMode}, KeyPrefix={KeyPrefix}, AccessKey={(string.IsNullOrEmpty(AccessKey) ? "(default chain)" : "(set)")})";
}

/// <summary>Cross-field rules of <see cref="BlobOptions"/>; every failure names its configuration key.</summary>
public sealed class BlobOptionsValidator : IValidateOptions<BlobOptions>
{
    const string P = BlobOptions.SectionName;

    public ValidateOptionsResult Validate(string? name, BlobOptions options)
    {
        var errors = new List<string>();
        switch (options.Provider)
        {
            case BlobProvider.Directory:
                if (string.IsNullOrWhiteSpace(options.Directory))
                    errors.Add($"{P}:Directory is empty; set it to the folder that holds the blobs (or leave it unset for {{Fleet:DataDirectory}}/blobs).");
                if (!IsHttpUrl(options.PublicBaseUrl, out var why))
                    errors.Add($"{P}:PublicBaseUrl {why}; it is the coordinator's externally reachable base URL used in presigned blob URLs, e.g. \"{BlobOptions.DefaultPublicBaseUrl}\".");
                break;

            case BlobProvider.S3:
                ValidateS3(options.S3, errors);
                break;

            default:
                errors.Add($"{P}:Provider has the unknown value {(int)options.Provider}; use Directory or S3.");
                break;
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    static void ValidateS3(S3BlobOptions s3, List<string> errors)
    {
        const string S = P + ":S3";
        if (string.IsNullOrWhiteSpace(s3.Bucket))
            errors.Add($"{S}:Bucket is required when {P}:Provider is S3.");
        else if (!IsBucketName(s3.Bucket))
            errors.Add($"{S}:Bucket '{s3.Bucket}' is not a valid bucket name (3-63 characters: lowercase letters, digits, '.' and '-', starting and ending with a letter or digit).");

        if (string.IsNullOrWhiteSpace(s3.ServiceUrl) && string.IsNullOrWhiteSpace(s3.Region))
            errors.Add($"{S}:ServiceUrl or {S}:Region is required when {P}:Provider is S3 (ServiceUrl for an S3-compatible server, Region for AWS).");
        if (!string.IsNullOrWhiteSpace(s3.ServiceUrl) && !IsHttpUrl(s3.ServiceUrl, out var why))
            errors.Add($"{S}:ServiceUrl {why}.");

        var hasAccess = !string.IsNullOrEmpty(s3.AccessKey);
        var hasSecret = !string.IsNullOrEmpty(s3.SecretKey);
        if (hasAccess && !hasSecret)
            errors.Add($"{S}:SecretKey is required when {S}:AccessKey is set (or leave both unset to use the default AWS credential chain).");
        if (hasSecret && !hasAccess)
            errors.Add($"{S}:AccessKey is required when {S}:SecretKey is set (or leave both unset to use the default AWS credential chain).");

        if (!string.IsNullOrEmpty(s3.KeyPrefix) && BlobKey.GetError(s3.KeyPrefix, isPrefix: true) is { } prefixError)
            errors.Add($"{S}:KeyPrefix {BlobKey.Describe(s3.KeyPrefix)} is invalid: {prefixError}.");
    }

    static bool IsHttpUrl(string? value, out string why)
    {
        why = "";
        if (string.IsNullOrWhiteSpace(value)) { why = "is empty"; return false; }
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri)) { why = $"'{value}' is not an absolute URL"; return false; }
        if (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps) { why = $"'{value}' is not an http:// or https:// URL"; return false; }
        if (!string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment)) { why = $"'{value}' must not have a query or fragment"; return false; }
        return true;
    }

    static bool IsBucketName(string name) =>
        name.Length is >= 3 and <= 63
        && name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '-')
        && char.IsAsciiLetterOrDigit(name[0]) && char.IsAsciiLetterOrDigit(name[^1]);
}
