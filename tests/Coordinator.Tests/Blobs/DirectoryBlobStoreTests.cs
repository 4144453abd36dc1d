using System.Net;
using System.Text.Json;
using Fleet.Coordinator.Blobs;
using Fleet.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using static Fleet.Coordinator.Tests.Blobs.BlobTestData;

namespace Fleet.Coordinator.Tests.Blobs;

public sealed class DirectoryBlobStoreTests(DirectoryBlobHost host) : BlobStoreContract, IClassFixture<DirectoryBlobHost>
{
    protected override IBlobStore Store => host.Store;

    static CancellationToken Ct => CancellationToken.None;

    [Fact]
    public void The_signing_key_is_created_on_start_readable_only_by_the_owner()
    {
        var path = Path.Combine(host.BlobsDirectory, ".presign-key");
        Assert.True(File.Exists(path), "the host started, so .presign-key must exist");
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public async Task Blobs_are_files_under_the_directory_and_no_temp_files_remain()
    {
        var payload = Random(4096);
        await Store.PutAsync(P + "x/y.bin", new MemoryStream(payload), null, Ct);

        var file = Path.Combine(host.BlobsDirectory, P, "x", "y.bin");
        AssertSameBytes(payload, await File.ReadAllBytesAsync(file), "file on disk");
        Assert.Equal(["y.bin"], Directory.GetFiles(Path.GetDirectoryName(file)!).Select(Path.GetFileName));
    }

    [Fact]
    public async Task A_failed_upload_leaves_no_temp_file_and_no_blob()
    {
        var key = P + "never.bin";
        await Assert.ThrowsAsync<IOException>(() => Store.PutAsync(key, new FailingStream(Random(100_000), 50_000), null, Ct));

        Assert.False(await Store.ExistsAsync(key, Ct));
        Assert.Empty(Directory.GetFiles(Path.Combine(host.BlobsDirectory, P)));
    }

    [Fact]
    public async Task Listing_skips_the_signing_key_temp_files_and_foreign_files()
    {
        await Store.PutAsync(P + "real.bin", new MemoryStream([1, 2, 3]), null, Ct);
        var dir = Path.Combine(host.BlobsDirectory, P);
        await File.WriteAllTextAsync(Path.Combine(dir, ".0123abcd~upload"), "half-written");
        await File.WriteAllTextAsync(Path.Combine(dir, "has space.txt"), "not a valid key");

        Assert.Equal([P + "real.bin"], (await ListAsync(P)).Select(b => b.Key));
        Assert.DoesNotContain(await ListAsync(""), b => b.Key == ".presign-key");
    }

    [Fact]
    public async Task The_signing_key_name_is_reserved()
    {
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => Store.PutAsync(".presign-key", new MemoryStream([1]), null, Ct));
        Assert.Contains("'.presign-key'", ex.Message);
        Assert.Contains("reserved", ex.Message);
    }

    [Fact]
    public async Task A_key_that_is_also_a_folder_fails_with_a_clear_message()
    {
        await Store.PutAsync(P + "a", new MemoryStream([1]), null, Ct);
        var ex = await Assert.ThrowsAsync<BlobConflictException>(() => Store.PutAsync(P + "a/b", new MemoryStream([2]), null, Ct));
        Assert.Contains($"'{P}a' is already a blob", ex.Message);
        using (var put = await Http.PutAsync(Store.PresignUpload(P + "a/b", TimeSpan.FromMinutes(1)), new ByteArrayContent([3])))
        {
            Assert.Equal(HttpStatusCode.Conflict, put.StatusCode);
            Assert.Contains("is already a blob", await ProblemDetail(put));
        }

        await Store.PutAsync(P + "c/d", new MemoryStream([1]), null, Ct);
        ex = await Assert.ThrowsAsync<BlobConflictException>(() => Store.PutAsync(P + "c", new MemoryStream([2]), null, Ct));
        Assert.Contains($"'{P}c/' is a folder", ex.Message);
        Assert.Null(await Store.OpenReadAsync(P + "c", Ct));
        Assert.False(await Store.ExistsAsync(P + "c", Ct));
        await Store.DeleteAsync(P + "c", Ct); // a folder is not a blob: nothing to delete
        Assert.True(await Store.ExistsAsync(P + "c/d", Ct));
    }

    [Fact]
    public async Task A_segment_longer_than_a_file_name_can_be_is_rejected_and_one_just_under_works()
    {
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => Store.PutAsync(P + new string('x', 256), new MemoryStream([1]), null, Ct));
        Assert.Contains("256 characters", ex.Message);
        Assert.Contains("at most 255 per segment", ex.Message);

        var longest = P + new string('y', 255);
        await Store.PutAsync(longest, new MemoryStream([1, 2]), null, Ct);
        Assert.Equal(2, Assert.Single(await ListAsync(P)).Size);
    }

    [Fact]
    public async Task Delete_removes_folders_left_empty()
    {
        await Store.PutAsync(P + "deep/er/blob.bin", new MemoryStream([1]), null, Ct);
        await Store.PutAsync(P + "keep.bin", new MemoryStream([1]), null, Ct);

        await Store.DeleteAsync(P + "deep/er/blob.bin", Ct);

        Assert.False(Directory.Exists(Path.Combine(host.BlobsDirectory, P, "deep")));
        Assert.True(Directory.Exists(Path.Combine(host.BlobsDirectory, P)));
        await Store.PutAsync(P + "deep/er/blob.bin", new MemoryStream([7]), null, Ct); // and the folder comes back
        Assert.True(await Store.ExistsAsync(P + "deep/er/blob.bin", Ct));
    }

    [Fact]
    public async Task A_presigned_url_with_a_flipped_signature_character_is_forbidden()
    {
        var key = P + "signed.bin";
        await Store.PutAsync(key, new MemoryStream(Random(100)), null, Ct);
        var url = Store.PresignDownload(key, TimeSpan.FromMinutes(5)).AbsoluteUri;

        var tampered = TamperSignature(url);

        using var get = await Http.GetAsync(tampered);
        Assert.Equal(HttpStatusCode.Forbidden, get.StatusCode);
    }

    [Fact]
    public async Task A_presigned_url_for_another_key_is_forbidden()
    {
        await Store.PutAsync(P + "one.bin", new MemoryStream(Random(100)), null, Ct);
        await Store.PutAsync(P + "two.bin", new MemoryStream(Random(100)), null, Ct);
        var url = Store.PresignDownload(P + "one.bin", TimeSpan.FromMinutes(5)).AbsoluteUri;

        using var get = await Http.GetAsync(url.Replace("/one.bin", "/two.bin", StringComparison.Ordinal));

        Assert.Equal(HttpStatusCode.Forbidden, get.StatusCode);
    }

    [Fact]
    public async Task An_expired_presigned_url_is_forbidden_with_a_clear_message()
    {
        var key = P + "expiring.bin";
        await Store.PutAsync(key, new MemoryStream(Random(10)), null, Ct);
        var download = Store.PresignDownload(key, TimeSpan.FromMinutes(10));
        var upload = Store.PresignUpload(key, TimeSpan.FromMinutes(10));

        host.Time.Advance(TimeSpan.FromMinutes(9));
        using (var stillValid = await Http.GetAsync(download))
            Assert.Equal(HttpStatusCode.OK, stillValid.StatusCode);

        host.Time.Advance(TimeSpan.FromMinutes(2));
        using var get = await Http.GetAsync(download);
        Assert.Equal(HttpStatusCode.Forbidden, get.StatusCode);
        Assert.Contains("expired", await ProblemDetail(get));

        using var put = await Http.PutAsync(upload, new ByteArrayContent([1]));
        Assert.Equal(HttpStatusCode.Forbidden, put.StatusCode);
        Assert.Contains("expired", await ProblemDetail(put));
    }

    [Fact]
    public async Task A_tampered_presigned_url_is_forbidden_with_a_clear_message()
    {
        var key = P + "tamper.bin";
        await Store.PutAsync(key, new MemoryStream(Random(10)), null, Ct);
        var url = Store.PresignDownload(key, TimeSpan.FromMinutes(5)).AbsoluteUri;

        foreach (var bad in new[]
                 {
                     TamperSignature(url),
                     url.Replace("expires=", "expires=1", StringComparison.Ordinal), // pushed the expiry out
                     url + "AAAA",
                     url.Replace("sig=", "sig=%%%", StringComparison.Ordinal),
                 })
        {
            using var get = await Http.GetAsync(bad);
            Assert.Equal(HttpStatusCode.Forbidden, get.StatusCode);
            Assert.Contains("signature is invalid", await ProblemDetail(get));
        }
    }

    [Fact]
    public async Task A_download_url_cannot_upload_and_an_upload_url_cannot_download()
    {
        var key = P + "methods.bin";
        var original = Random(10);
        await Store.PutAsync(key, new MemoryStream(original), null, Ct);

        using (var put = await Http.PutAsync(Store.PresignDownload(key, TimeSpan.FromMinutes(5)), new ByteArrayContent([9, 9])))
            Assert.Equal(HttpStatusCode.Forbidden, put.StatusCode);
        using (var get = await Http.GetAsync(Store.PresignUpload(key, TimeSpan.FromMinutes(5))))
            Assert.Equal(HttpStatusCode.Forbidden, get.StatusCode);

        AssertSameBytes(original, await ReadAllAsync((await Store.OpenReadAsync(key, Ct))!), "blob after rejected PUT");
    }

    [Fact]
    public async Task An_unsigned_request_is_forbidden()
    {
        var key = P + "unsigned.bin";
        await Store.PutAsync(key, new MemoryStream(Random(10)), null, Ct);
        var url = Store.PresignDownload(key, TimeSpan.FromMinutes(5));

        using var get = await Http.GetAsync(url.GetLeftPart(UriPartial.Path));

        Assert.Equal(HttpStatusCode.Forbidden, get.StatusCode);
        Assert.Contains("'expires' and 'sig'", await ProblemDetail(get));
    }

    [Fact]
    public async Task A_presigned_upload_above_kestrels_default_body_limit_streams_through()
    {
        var payload = Random(31 * 1024 * 1024); // Kestrel's default MaxRequestBodySize is 30,000,000 bytes
        var key = P + "big.bin";

        using (var put = await Http.PutAsync(Store.PresignUpload(key, TimeSpan.FromMinutes(5)), new ByteArrayContent(payload)))
            Assert.True(put.IsSuccessStatusCode, $"PUT answered {(int)put.StatusCode}: {await put.Content.ReadAsStringAsync()}");

        using var get = await Http.GetAsync(Store.PresignDownload(key, TimeSpan.FromMinutes(5)), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(payload.Length, get.Content.Headers.ContentLength);
        AssertSameBytes(payload, await get.Content.ReadAsByteArrayAsync(), "31 MiB presigned GET");
    }

    [Fact]
    public async Task Presigned_get_supports_ranges_and_content_type_by_extension()
    {
        var key = P + "report.json";
        var payload = Random(1000);
        await Store.PutAsync(key, new MemoryStream(payload), "application/json", Ct);

        using var request = new HttpRequestMessage(HttpMethod.Get, Store.PresignDownload(key, TimeSpan.FromMinutes(5)));
        request.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(100, 199);
        using var get = await Http.SendAsync(request);

        Assert.Equal(HttpStatusCode.PartialContent, get.StatusCode);
        Assert.Equal("application/json", get.Content.Headers.ContentType?.MediaType);
        AssertSameBytes(payload[100..200], await get.Content.ReadAsByteArrayAsync(), "range");
    }

    [Fact]
    public async Task A_url_signed_before_a_restart_still_works_after_it()
    {
        var key = P + "survives.bin";
        var payload = Random(500);
        await Store.PutAsync(key, new MemoryStream(payload), null, Ct);
        var url = Store.PresignDownload(key, TimeSpan.FromHours(1));

        // A second store on the same directory (a restarted coordinator) loads the same signing key.
        var restarted = new DirectoryBlobStore(host.BlobsDirectory, new Uri("http://127.0.0.1:1"), host.Time, NullLogger<DirectoryBlobStore>.Instance);
        var query = System.Web.HttpUtility.ParseQueryString(url.Query);
        Assert.Null(restarted.CheckSignature("GET", key, query["expires"], query["sig"]));
        Assert.NotNull(restarted.CheckSignature("PUT", key, query["expires"], query["sig"]));
    }

    [Fact]
    public void A_new_directory_gets_its_own_signing_key()
    {
        using var other = new TempDirectory();
        var store = new DirectoryBlobStore(other.Combine("blobs"), new Uri("http://127.0.0.1:1"), host.Time, NullLogger<DirectoryBlobStore>.Instance);
        var url = host.Store.PresignDownload("k.bin", TimeSpan.FromHours(1));
        var query = System.Web.HttpUtility.ParseQueryString(url.Query);

        Assert.Contains("signature is invalid", store.CheckSignature("GET", "k.bin", query["expires"], query["sig"]));
        Assert.True(File.Exists(other.Combine("blobs", ".presign-key")));
    }

    [Fact]
    public void Presigned_urls_use_the_public_base_url_and_escape_the_key()
    {
        var url = Store.PresignUpload("runs/42/out=1+2.log", TimeSpan.FromMinutes(1));

        Assert.Equal(host.App.Urls.Single(), url.GetLeftPart(UriPartial.Authority));
        Assert.StartsWith("/blobs/runs/42/out%3D1%2B2.log", url.AbsolutePath, StringComparison.Ordinal);
        Assert.Matches(@"^\?expires=\d+&sig=[A-Za-z0-9_-]+$", url.Query);
    }

    static async Task<string> ProblemDetail(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync();
        using var doc = JsonDocument.Parse(body);
        return doc.RootElement.GetProperty("detail").GetString() ?? "";
    }
}
