namespace Fleet.Coordinator.Blobs;

/// <summary>
/// Stores opaque blobs (audit archives, backups, run output) under slash-separated keys.
/// Keys follow <see cref="BlobKey"/>'s rules; a bad key throws <see cref="ArgumentException"/>.
/// </summary>
public interface IBlobStore
{
    /// <summary>Stores (or replaces) the blob. Readers see either the old or the new content, never a partial one.</summary>
    Task PutAsync(string key, Stream content, string? contentType, CancellationToken ct);

    /// <summary>Opens the blob for reading; null when it does not exist. The caller disposes the stream.</summary>
    Task<Stream?> OpenReadAsync(string key, CancellationToken ct);

    Task<bool> ExistsAsync(string key, CancellationToken ct);

    /// <summary>Deletes the blob; deleting a missing blob is not an error.</summary>
    Task DeleteAsync(string key, CancellationToken ct);

    /// <summary>
    /// Blobs whose key starts with <paramref name="prefix"/> (a plain string prefix, "" for all, recursive), in ordinal
    /// key order for the Directory store and AWS S3 (some S3-compatible servers, e.g. s3rver, use their own order).
    /// </summary>
    IAsyncEnumerable<BlobInfo> ListAsync(string prefix, CancellationToken ct);

    /// <summary>A URL to which a plain HTTP PUT of the body stores the blob, valid for <paramref name="validFor"/>.</summary>
    Uri PresignUpload(string key, TimeSpan validFor);

    /// <summary>A URL from which a plain HTTP GET returns the blob, valid for <paramref name="validFor"/>.</summary>
    Uri PresignDownload(string key, TimeSpan validFor);
}

public sealed record BlobInfo(string Key, long Size, DateTime LastModifiedUtc);

/// <summary>The blob cannot be stored because its key clashes with other blobs (Directory store: "a" and "a/b").</summary>
public sealed class BlobConflictException : IOException
{
    public BlobConflictException() { }

    public BlobConflictException(string message) : base(message) { }

    public BlobConflictException(string message, Exception innerException) : base(message, innerException) { }
}
