using System.Net;
using Fleet.Coordinator.Blobs;
using Microsoft.Extensions.Logging.Abstractions;
using static Fleet.Coordinator.Tests.Blobs.BlobTestData;

namespace Fleet.Coordinator.Tests.Blobs;

/// <summary>The store contract against s3rver (FLEET_TEST_S3), in CompatibilityMode.</summary>
public sealed class S3BlobStoreTests : BlobStoreContract, IClassFixture<S3Bucket>, IDisposable
{
    readonly S3BlobStore _store;

    public S3BlobStoreTests(S3Bucket bucket) =>
        _store = new S3BlobStore(bucket.Options(), TimeProvider.System, NullLogger<S3BlobStore>.Instance);

    protected override IBlobStore Store => _store;

    // s3rver walks its directory tree; AWS S3 sorts by UTF-8 bytes. (s3rver also does not verify SigV4
    // signatures, so tampered-URL tests run against the Directory store only.)
    protected override bool ListsInKeyOrder => false;

    public void Dispose() => _store.Dispose();
}

/// <summary>S3-only behaviour: key prefixes, paging, missing bucket, expiry enforced by the server.</summary>
public sealed class S3BlobStoreSpecificTests(S3Bucket bucket) : IClassFixture<S3Bucket>
{
    static CancellationToken Ct => CancellationToken.None;
    static readonly HttpClient Http = new();

    S3BlobStore NewStore(string? keyPrefix = null, TimeProvider? time = null, bool compatibilityMode = true) =>
        new(bucket.Options(keyPrefix, compatibilityMode), time ?? TimeProvider.System, NullLogger<S3BlobStore>.Instance);

    [Fact]
    public async Task A_key_prefix_isolates_stores_sharing_a_bucket()
    {
        var run = $"p{Guid.NewGuid():N}"[..9];
        using var tenantA = NewStore(run + "/a/");
        using var tenantB = NewStore(run + "/b/");
        using var whole = NewStore();
        var payload = Random(123);

        await tenantA.PutAsync("x/blob.bin", new MemoryStream(payload), null, Ct);
        await tenantB.PutAsync("x/other.bin", new MemoryStream(Random(5)), null, Ct);

        Assert.Equal(["x/blob.bin"], await Keys(tenantA, ""));
        Assert.Equal(["x/other.bin"], await Keys(tenantB, "x/"));
        Assert.Null(await tenantB.OpenReadAsync("x/blob.bin", Ct));
        Assert.Equal([run + "/a/x/blob.bin", run + "/b/x/other.bin"], await Keys(whole, run + "/"));
        AssertSameBytes(payload, await ReadAllAsync((await whole.OpenReadAsync(run + "/a/x/blob.bin", Ct))!), "object under the prefix");
        Assert.Contains($"/{bucket.Name}/{run}/a/x/blob.bin", tenantA.PresignDownload("x/blob.bin", TimeSpan.FromMinutes(1)).AbsolutePath);
    }

    [Fact]
    public async Task Listing_follows_continuation_pages()
    {
        var run = $"p{Guid.NewGuid():N}"[..9] + "/";
        using var store = NewStore();
        store.ListPageSize = 2;
        var expected = Enumerable.Range(0, 7).Select(i => $"{run}k{i:D2}").ToArray();
        foreach (var key in expected)
            await store.PutAsync(key, new MemoryStream([1]), null, Ct);

        Assert.Equal(expected, await Keys(store, run));
    }

    [Fact]
    public async Task A_missing_bucket_is_an_error_not_a_missing_blob()
    {
        var options = bucket.Options();
        options.Bucket = "fleet-blobs-does-not-exist";
        using var store = new S3BlobStore(options, TimeProvider.System, NullLogger<S3BlobStore>.Instance);

        var ex = await Assert.ThrowsAsync<Amazon.S3.AmazonS3Exception>(() => store.OpenReadAsync("a.bin", Ct));
        Assert.Equal("NoSuchBucket", ex.ErrorCode);
    }

    [Fact]
    public void Presigned_urls_are_valid_for_the_requested_time()
    {
        using var store = NewStore(time: new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow));

        var url = store.PresignUpload("some/key.bin", TimeSpan.FromSeconds(90));

        var query = System.Web.HttpUtility.ParseQueryString(url.Query);
        Assert.InRange(int.Parse(query["X-Amz-Expires"]!, System.Globalization.CultureInfo.InvariantCulture), 85, 91); // X-Amz-Date is truncated to the second
        Assert.Equal("http", url.Scheme); // the ServiceUrl is http://, so the presigned URL is too
        Assert.Equal($"/{bucket.Name}/some/key.bin", url.AbsolutePath); // path-style
    }

    [Fact]
    public async Task An_expired_presigned_url_is_forbidden_by_the_server()
    {
        using var store = NewStore();
        var key = $"p{Guid.NewGuid():N}"[..9] + "/expiring.bin";
        await store.PutAsync(key, new MemoryStream(Random(10)), null, Ct);

        var url = store.PresignDownload(key, TimeSpan.FromSeconds(1));

        // Waiting for wall-clock time to pass is the point here (s3rver checks X-Amz-Date + X-Amz-Expires).
        await Fleet.Testing.Eventually.UntilAsync(async () =>
        {
            using var get = await Http.GetAsync(url);
            return get.StatusCode;
        }, status => status == HttpStatusCode.Forbidden, "s3rver to reject the expired URL", TimeSpan.FromSeconds(15));
    }

    static async Task<string[]> Keys(S3BlobStore store, string prefix)
    {
        var keys = new List<string>();
        await foreach (var b in store.ListAsync(prefix, Ct)) keys.Add(b.Key);
        return keys.ToArray();
    }
}

/// <summary>Why <see cref="S3BlobOptions.CompatibilityMode"/> exists: the upload "succeeds" and the object is not what was sent.</summary>
public sealed class S3CompatibilityModeTests(S3Bucket bucket) : IClassFixture<S3Bucket>
{
    [Fact]
    public async Task Without_compatibility_mode_s3rver_stores_a_different_body()
    {
        using var plain = new S3BlobStore(bucket.Options(compatibilityMode: false), TimeProvider.System, NullLogger<S3BlobStore>.Instance);
        var payload = Random(1024);

        await plain.PutAsync("trap.bin", new MemoryStream(payload), null, CancellationToken.None);

        using var compat = new S3BlobStore(bucket.Options(), TimeProvider.System, NullLogger<S3BlobStore>.Instance);
        var stored = await ReadAllAsync((await compat.OpenReadAsync("trap.bin", CancellationToken.None))!);
        Assert.NotEqual(payload, stored);
    }
}
