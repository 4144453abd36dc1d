using System.Net;
using System.Net.Http.Headers;
using Fleet.Coordinator.Blobs;
using static Fleet.Coordinator.Tests.Blobs.BlobTestData;

namespace Fleet.Coordinator.Tests.Blobs;

/// <summary>
/// Behaviour every <see cref="IBlobStore"/> must have; run against the Directory store and against s3rver.
/// Downloads are always compared byte for byte: a store can report success and still return something else.
/// </summary>
public abstract class BlobStoreContract
{
    protected static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(60) };

    protected abstract IBlobStore Store { get; }

    /// <summary>AWS S3 and the Directory store list in ordinal key order; s3rver lists in its file-system walk order.</summary>
    protected virtual bool ListsInKeyOrder => true;

    /// <summary>xunit makes a new instance per test: every test gets its own key namespace.</summary>
    protected string P { get; } = $"t{Guid.NewGuid():N}"[..13] + "/";

    static CancellationToken Ct => CancellationToken.None;

    [Theory]
    [InlineData(0)]
    [InlineData(1024)]
    [InlineData(TwelveMiB)]
    public async Task Put_then_read_returns_the_same_bytes(int size)
    {
        var payload = Random(size);
        var key = P + $"payload-{size}.bin";

        await Store.PutAsync(key, new MemoryStream(payload), "application/octet-stream", Ct);

        Assert.True(await Store.ExistsAsync(key, Ct));
        var stream = await Store.OpenReadAsync(key, Ct);
        Assert.NotNull(stream);
        AssertSameBytes(payload, await ReadAllAsync(stream), $"{size}-byte blob read back");

        var listed = Assert.Single(await ListAsync(P));
        Assert.Equal(key, listed.Key);
        Assert.Equal(size, listed.Size);
        Assert.Equal(DateTimeKind.Utc, listed.LastModifiedUtc.Kind);
        Assert.InRange(listed.LastModifiedUtc, DateTime.UtcNow.AddMinutes(-5), DateTime.UtcNow.AddMinutes(5));
    }

    [Fact]
    public async Task Put_of_a_non_seekable_stream_larger_than_a_part_round_trips()
    {
        var payload = Random(TwelveMiB);
        var key = P + "unseekable.bin";

        await Store.PutAsync(key, new FailingStream(payload, int.MaxValue), null, Ct);

        AssertSameBytes(payload, await ReadAllAsync((await Store.OpenReadAsync(key, Ct))!), "non-seekable upload read back");
    }

    [Fact]
    public async Task Put_replaces_an_existing_blob()
    {
        var key = P + "replace/me.txt";
        await Store.PutAsync(key, new MemoryStream(Random(5000)), "text/plain", Ct);
        var second = Random(300);

        await Store.PutAsync(key, new MemoryStream(second), "text/plain", Ct);

        AssertSameBytes(second, await ReadAllAsync((await Store.OpenReadAsync(key, Ct))!), "replaced blob");
        Assert.Equal(300, Assert.Single(await ListAsync(P)).Size);
    }

    [Theory]
    [InlineData(1000)]              // fails while the first part is buffered
    [InlineData(9 * 1024 * 1024)]   // fails after the first S3 part was uploaded (multipart upload aborted)
    public async Task A_failed_upload_leaves_the_previous_content(int failAfter)
    {
        var key = P + "atomic.bin";
        var original = Random(2048);
        await Store.PutAsync(key, new MemoryStream(original), null, Ct);

        await Assert.ThrowsAsync<IOException>(() =>
            Store.PutAsync(key, new FailingStream(Random(TwelveMiB), failAfter), null, Ct));

        AssertSameBytes(original, await ReadAllAsync((await Store.OpenReadAsync(key, Ct))!), "blob after a failed replacement");
        Assert.Equal([key], (await ListAsync(P)).Select(b => b.Key));
    }

    [Fact]
    public async Task A_missing_blob_reads_as_null_and_does_not_exist()
    {
        Assert.Null(await Store.OpenReadAsync(P + "missing.bin", Ct));
        Assert.Null(await Store.OpenReadAsync(P + "missing/folder/blob.bin", Ct));
        Assert.False(await Store.ExistsAsync(P + "missing.bin", Ct));
    }

    [Fact]
    public async Task Delete_is_idempotent()
    {
        var key = P + "doomed/blob.bin";
        await Store.DeleteAsync(key, Ct); // never existed
        await Store.PutAsync(key, new MemoryStream(Random(10)), null, Ct);

        await Store.DeleteAsync(key, Ct);
        await Store.DeleteAsync(key, Ct);

        Assert.False(await Store.ExistsAsync(key, Ct));
        Assert.Null(await Store.OpenReadAsync(key, Ct));
        Assert.Empty(await ListAsync(P));
    }

    [Fact]
    public async Task List_matches_a_string_prefix_recursively_in_key_order()
    {
        string[] keys = ["b", "ab/c", "a/2/x", "a-b", "a/1", "a/2/y/z.tar"];
        foreach (var k in keys)
            await Store.PutAsync(P + k, new MemoryStream(Random(k.Length)), null, Ct);

        Assert.Equal(["a-b", "a/1", "a/2/x", "a/2/y/z.tar", "ab/c", "b"], await ListKeysAsync(P));
        Assert.Equal(["a/1", "a/2/x", "a/2/y/z.tar"], await ListKeysAsync(P + "a/"));
        Assert.Equal(["a/2/x", "a/2/y/z.tar"], await ListKeysAsync(P + "a/2"));
        Assert.Equal(["a-b", "a/1", "a/2/x", "a/2/y/z.tar", "ab/c"], await ListKeysAsync(P + "a"));
        Assert.Equal(["ab/c"], await ListKeysAsync(P + "ab"));
        Assert.Empty(await ListKeysAsync(P + "nothing-here"));
        Assert.Empty(await ListKeysAsync(P + "a/3/"));
        Assert.All(await ListAsync(P), b => Assert.Equal(b.Key.Length - P.Length, b.Size));

        async Task<string[]> ListKeysAsync(string prefix)
        {
            var keys = (await ListAsync(prefix)).Select(b => b.Key[P.Length..]).ToArray();
            return ListsInKeyOrder ? keys : keys.Order(StringComparer.Ordinal).ToArray();
        }
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("/abs/path", "starts with '/'")]
    [InlineData("a/../b", "'..' segment")]
    [InlineData("..", "'..' segment")]
    [InlineData("a\\b", "backslash")]
    [InlineData("a\nb", "control character")]
    [InlineData("a b", "' '")]
    [InlineData("a/", "ends with '/'")]
    [InlineData("a//b", "empty segment")]
    [InlineData("naïve", "'ï'")]
    public async Task A_bad_key_is_rejected_naming_the_key_and_the_problem(string key, string problem)
    {
        await AssertBadKey(() => Store.PutAsync(key, new MemoryStream([1]), null, Ct));
        await AssertBadKey(() => Store.OpenReadAsync(key, Ct));
        await AssertBadKey(() => Store.ExistsAsync(key, Ct));
        await AssertBadKey(() => Store.DeleteAsync(key, Ct));
        await AssertBadKey(() => Task.FromResult(Store.PresignUpload(key, TimeSpan.FromMinutes(1))));
        await AssertBadKey(() => Task.FromResult(Store.PresignDownload(key, TimeSpan.FromMinutes(1))));

        async Task AssertBadKey(Func<Task> call)
        {
            var ex = await Assert.ThrowsAsync<ArgumentException>(call);
            Assert.Contains(BlobKey.Describe(key), ex.Message); // the key, quoted, control characters escaped
            Assert.Contains(problem, ex.Message);
        }
    }

    [Fact]
    public async Task A_bad_prefix_is_rejected_when_listing()
    {
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => ListAsync("a/../"));
        Assert.Contains("'a/../'", ex.Message);
        Assert.Contains("'..'", ex.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1024)]
    [InlineData(TwelveMiB)]
    public async Task Presigned_put_then_presigned_get_with_a_plain_http_client(int size)
    {
        var payload = Random(size);
        var key = P + $"presigned/{size}=v+1_x.bin";

        var upload = Store.PresignUpload(key, TimeSpan.FromMinutes(5));
        using var content = new ByteArrayContent(payload);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using (var put = await Http.PutAsync(upload, content))
            Assert.True(put.IsSuccessStatusCode, $"PUT {upload} answered {(int)put.StatusCode}: {await put.Content.ReadAsStringAsync()}");

        var download = Store.PresignDownload(key, TimeSpan.FromMinutes(5));
        using (var get = await Http.GetAsync(download, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.True(get.StatusCode == HttpStatusCode.OK, $"GET {download} answered {(int)get.StatusCode}: {await get.Content.ReadAsStringAsync()}");
            AssertSameBytes(payload, await get.Content.ReadAsByteArrayAsync(), "presigned GET");
        }
        // And the store itself sees what the plain PUT stored.
        AssertSameBytes(payload, await ReadAllAsync((await Store.OpenReadAsync(key, Ct))!), "store read after presigned PUT");
    }

    [Fact]
    public async Task A_presigned_get_of_a_missing_blob_is_not_found()
    {
        using var get = await Http.GetAsync(Store.PresignDownload(P + "never-stored.bin", TimeSpan.FromMinutes(5)));
        Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
    }

    /// <summary>Flips one character of the signature query parameter (sig= or X-Amz-Signature=).</summary>
    protected static string TamperSignature(string url)
    {
        foreach (var name in new[] { "sig=", "X-Amz-Signature=" })
        {
            var at = url.IndexOf(name, StringComparison.Ordinal);
            if (at < 0) continue;
            var i = at + name.Length + 3;
            var flipped = url[i] == 'a' ? 'b' : 'a';
            return url[..i] + flipped + url[(i + 1)..];
        }
        throw new InvalidOperationException($"No signature parameter in {url}");
    }

    protected async Task<List<BlobInfo>> ListAsync(string prefix)
    {
        var list = new List<BlobInfo>();
        await foreach (var b in Store.ListAsync(prefix, Ct)) list.Add(b);
        return list;
    }
}
