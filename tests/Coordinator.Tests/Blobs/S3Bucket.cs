using Amazon.S3;
using Amazon.S3.Model;
using Fleet.Coordinator.Blobs;
using Fleet.Testing;

namespace Fleet.Coordinator.Tests.Blobs;

/// <summary>A fresh bucket on the harness's s3rver for one test class, emptied and removed when disposed.</summary>
public sealed class S3Bucket : IAsyncLifetime
{
    public string Name { get; } = $"fleet-blobs-{Guid.NewGuid():N}"[..24];

    /// <summary>Options of a store on this bucket: s3rver needs path-style addressing and CompatibilityMode.</summary>
    public S3BlobOptions Options(string? keyPrefix = null, bool compatibilityMode = true) => new()
    {
        ServiceUrl = TestServices.S3,
        Bucket = Name,
        AccessKey = TestServices.S3AccessKey,
        SecretKey = TestServices.S3SecretKey,
        ForcePathStyle = true,
        CompatibilityMode = compatibilityMode,
        KeyPrefix = keyPrefix,
    };

    public async Task InitializeAsync()
    {
        using var client = S3BlobStore.CreateClient(Options());
        await client.PutBucketAsync(new PutBucketRequest { BucketName = Name }).DefaultTimeout();
    }

    public async Task DisposeAsync()
    {
        using var client = S3BlobStore.CreateClient(Options());
        try
        {
            var request = new ListObjectsV2Request { BucketName = Name };
            ListObjectsV2Response page;
            do
            {
                page = await client.ListObjectsV2Async(request);
                foreach (var o in page.S3Objects ?? [])
                    await client.DeleteObjectAsync(Name, o.Key);
                request.ContinuationToken = page.NextContinuationToken;
            } while (page.IsTruncated == true);
            await client.DeleteBucketAsync(Name);
        }
        catch (AmazonS3Exception)
        {
            // Best effort: s3rver's data directory is temporary.
        }
    }
}
