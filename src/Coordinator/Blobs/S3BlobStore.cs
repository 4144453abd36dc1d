using System.Buffers;
using System.Net;
using System.Runtime.CompilerServices;
using Amazon;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Microsoft.Extensions.Logging;

namespace Fleet.Coordinator.Blobs;

/// <summary>
/// Blobs in an S3 bucket (AWS, MinIO, or s3rver with <see cref="S3BlobOptions.CompatibilityMode"/>).
/// Uploads are buffered in parts of <see cref="MinPartSize"/> or more: a body that fits in one part is a single
/// PutObject, a larger one a multipart upload (aborted on failure), so no upload size limit and bounded memory.
/// </summary>
public sealed class S3BlobStore : IBlobStore, IDisposable
{
    /// <summary>Part size of multipart uploads (S3's minimum is 5 MiB for every part but the last).</summary>
    public const int MinPartSize = 8 * 1024 * 1024;

    const int MaxParts = 10_000;

    readonly IAmazonS3 _client;
    readonly string _bucket;
    readonly string _keyPrefix;
    readonly bool _compatibilityMode;
    readonly Amazon.S3.Protocol _presignProtocol;
    readonly TimeProvider _time;
    readonly ILogger _logger;

    public S3BlobStore(S3BlobOptions options, TimeProvider time, ILogger<S3BlobStore> logger)
        : this(CreateClient(options), options, time, logger)
    {
    }

    internal S3BlobStore(IAmazonS3 client, S3BlobOptions options, TimeProvider time, ILogger<S3BlobStore> logger)
    {
        _client = client;
        _bucket = options.Bucket ?? throw new ArgumentException("Fleet:Blobs:S3:Bucket is required.", nameof(options));
        _keyPrefix = options.KeyPrefix ?? "";
        _compatibilityMode = options.CompatibilityMode;
        _presignProtocol = options.ServiceUrl is { } url && url.StartsWith("http://", StringComparison.OrdinalIgnoreCase)
            ? Amazon.S3.Protocol.HTTP : Amazon.S3.Protocol.HTTPS;
        _time = time;
        _logger = logger;
    }

    /// <summary>Page size of ListObjectsV2 (tests lower it to exercise paging).</summary>
    internal int ListPageSize { get; set; } = 1000;

    /// <summary>An S3 client for these options; with CompatibilityMode, checksums are only sent or checked when an operation requires them.</summary>
    public static AmazonS3Client CreateClient(S3BlobOptions options)
    {
        var config = new AmazonS3Config { ForcePathStyle = options.ForcePathStyle };
        if (!string.IsNullOrWhiteSpace(options.ServiceUrl))
        {
            config.ServiceURL = options.ServiceUrl;
            if (!string.IsNullOrWhiteSpace(options.Region)) config.AuthenticationRegion = options.Region;
        }
        else
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(options.Region);
        }
        if (options.CompatibilityMode)
        {
            config.RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED;
            config.ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED;
        }
        return !string.IsNullOrEmpty(options.AccessKey)
            ? new AmazonS3Client(new BasicAWSCredentials(options.AccessKey, options.SecretKey), config)
            : new AmazonS3Client(config);
    }

    public async Task PutAsync(string key, Stream content, string? contentType, CancellationToken ct)
    {
        BlobKey.Validate(key);
        ArgumentNullException.ThrowIfNull(content);
        var objectKey = _keyPrefix + key;

        var partSize = MinPartSize;
        if (content.CanSeek)
        {
            var remaining = content.Length - content.Position;
            partSize = (int)Math.Min(Array.MaxLength, Math.Max(MinPartSize, (remaining + MaxParts - 1) / MaxParts));
        }

        var buffer = ArrayPool<byte>.Shared.Rent(partSize);
        try
        {
            var read = await ReadFullyAsync(content, buffer, partSize, ct);
            if (read < partSize)
            {
                await PutSingleAsync(objectKey, buffer, read, contentType, ct);
                return;
            }
            await PutMultipartAsync(key, objectKey, content, buffer, partSize, contentType, ct);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    async Task PutSingleAsync(string objectKey, byte[] buffer, int count, string? contentType, CancellationToken ct)
    {
        using var body = new MemoryStream(buffer, 0, count, writable: false);
        var request = new PutObjectRequest
        {
            BucketName = _bucket,
            Key = objectKey,
            InputStream = body,
            AutoCloseStream = false,
            ContentType = contentType,
        };
        if (_compatibilityMode) request.UseChunkEncoding = false;
        await _client.PutObjectAsync(request, ct);
    }

    async Task PutMultipartAsync(string key, string objectKey, Stream content, byte[] buffer, int partSize, string? contentType, CancellationToken ct)
    {
        var initiated = await _client.InitiateMultipartUploadAsync(new InitiateMultipartUploadRequest
        {
            BucketName = _bucket,
            Key = objectKey,
            ContentType = contentType,
        }, ct);
        var uploadId = initiated.UploadId;
        try
        {
            var parts = new List<PartETag>();
            var count = partSize; // the first part is already in the buffer
            while (count > 0)
            {
                var partNumber = parts.Count + 1;
                if (partNumber > MaxParts)
                    throw new IOException($"Cannot store blob '{key}': it is larger than {MaxParts} parts of {partSize} bytes. Pass a seekable stream so the part size can be chosen from its length.");
                using (var body = new MemoryStream(buffer, 0, count, writable: false))
                {
                    var request = new UploadPartRequest
                    {
                        BucketName = _bucket,
                        Key = objectKey,
                        UploadId = uploadId,
                        PartNumber = partNumber,
                        PartSize = count,
                        InputStream = body,
                    };
                    if (_compatibilityMode) request.UseChunkEncoding = false;
                    var response = await _client.UploadPartAsync(request, ct);
                    parts.Add(new PartETag(partNumber, response.ETag));
                }
                count = await ReadFullyAsync(content, buffer, partSize, ct);
            }

            await _client.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest
            {
                BucketName = _bucket,
                Key = objectKey,
                UploadId = uploadId,
                PartETags = parts,
            }, ct);
        }
        catch (Exception ex)
        {
            try
            {
                await _client.AbortMultipartUploadAsync(new AbortMultipartUploadRequest
                {
                    BucketName = _bucket,
                    Key = objectKey,
                    UploadId = uploadId,
                }, CancellationToken.None);
            }
            catch (Exception abortError)
            {
                _logger.LogWarning(abortError, "Could not abort the multipart upload {UploadId} of blob {Key} after {Error}; the bucket's lifecycle rules must clean it up",
                    uploadId, key, ex.GetType().Name);
            }
            throw;
        }
    }

    static async Task<int> ReadFullyAsync(Stream stream, byte[] buffer, int count, CancellationToken ct)
    {
        var total = 0;
        while (total < count)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(total, count - total), ct);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    public async Task<Stream?> OpenReadAsync(string key, CancellationToken ct)
    {
        BlobKey.Validate(key);
        GetObjectResponse response;
        try
        {
            response = await _client.GetObjectAsync(new GetObjectRequest { BucketName = _bucket, Key = _keyPrefix + key }, ct);
        }
        catch (AmazonS3Exception ex) when (IsMissingObject(ex))
        {
            return null;
        }
        return new ResponseStream(response);
    }

    public async Task<bool> ExistsAsync(string key, CancellationToken ct)
    {
        BlobKey.Validate(key);
        try
        {
            await _client.GetObjectMetadataAsync(new GetObjectMetadataRequest { BucketName = _bucket, Key = _keyPrefix + key }, ct);
            return true;
        }
        catch (AmazonS3Exception ex) when (IsMissingObject(ex))
        {
            return false;
        }
    }

    // GET of a missing key answers 404 NoSuchKey; HEAD has no body, so its 404 surfaces as "NotFound".
    // A missing bucket (NoSuchBucket) is a configuration error and propagates.
    static bool IsMissingObject(AmazonS3Exception ex) =>
        ex.StatusCode == HttpStatusCode.NotFound && ex.ErrorCode is "NoSuchKey" or "NotFound";

    public async Task DeleteAsync(string key, CancellationToken ct)
    {
        BlobKey.Validate(key);
        // S3's DeleteObject succeeds for a missing key.
        await _client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = _bucket, Key = _keyPrefix + key }, ct);
    }

    public async IAsyncEnumerable<BlobInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken ct)
    {
        BlobKey.ValidatePrefix(prefix);
        var request = new ListObjectsV2Request { BucketName = _bucket, Prefix = _keyPrefix + prefix, MaxKeys = ListPageSize };
        while (true)
        {
            var response = await _client.ListObjectsV2Async(request, ct);
            // S3Objects is null (not empty) when nothing matches.
            foreach (var o in response.S3Objects ?? [])
            {
                if (!o.Key.StartsWith(_keyPrefix, StringComparison.Ordinal)) continue;
                var key = o.Key[_keyPrefix.Length..];
                if (!BlobKey.IsValid(key)) continue; // written by something else, not addressable through this store
                var modified = o.LastModified is { } lm ? lm.ToUniversalTime() : DateTime.MinValue;
                yield return new BlobInfo(key, o.Size ?? 0, DateTime.SpecifyKind(modified, DateTimeKind.Utc));
            }
            if (response.IsTruncated != true || string.IsNullOrEmpty(response.NextContinuationToken)) yield break;
            request.ContinuationToken = response.NextContinuationToken;
        }
    }

    public Uri PresignUpload(string key, TimeSpan validFor) => Presign(HttpVerb.PUT, key, validFor);

    public Uri PresignDownload(string key, TimeSpan validFor) => Presign(HttpVerb.GET, key, validFor);

    Uri Presign(HttpVerb verb, string key, TimeSpan validFor)
    {
        BlobKey.Validate(key);
        if (validFor <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(validFor), validFor, "A presigned URL must be valid for a positive time.");
        var url = _client.GetPreSignedURL(new GetPreSignedUrlRequest
        {
            BucketName = _bucket,
            Key = _keyPrefix + key,
            Verb = verb,
            Expires = _time.GetUtcNow().Add(validFor).UtcDateTime,
            Protocol = _presignProtocol,
        });
        return new Uri(url);
    }

    public void Dispose() => _client.Dispose();

    /// <summary>The object's body; disposing it disposes the whole response (and releases the connection).</summary>
    sealed class ResponseStream(GetObjectResponse response) : Stream
    {
        readonly Stream _inner = response.ResponseStream;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => response.ContentLength;
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);
        public override int Read(Span<byte> buffer) => _inner.Read(buffer);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            _inner.ReadAsync(buffer, offset, count, cancellationToken);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            _inner.ReadAsync(buffer, cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) response.Dispose();
            base.Dispose(disposing);
        }
    }
}
