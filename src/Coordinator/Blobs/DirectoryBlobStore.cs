using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Fleet.Coordinator.Blobs;

/// <summary>
/// Blobs as files under one directory (key "a/b.tar" is the file "{root}/a/b.tar"). Writes are atomic: a temp file in the
/// target's directory, fsync, rename over the target, fsync of the directory. Presigned URLs point at the coordinator's
/// <c>/blobs/{key}</c> endpoint and carry an HMAC-SHA256 over (method, key, expiry) keyed by <c>{root}/.presign-key</c>.
/// </summary>
/// <remarks>
/// A key cannot be both a blob and a folder of other blobs here ("a" and "a/b"), unlike S3: such a put fails with a
/// <see cref="BlobConflictException"/> naming both. The content type is not stored; downloads get one from the file extension.
/// </remarks>
public sealed class DirectoryBlobStore : IBlobStore
{
    public const string PresignKeyFileName = ".presign-key";
    public const string EndpointPrefix = "/blobs/";

    // '~' is not allowed in keys, so temp files can never collide with a blob or be listed as one.
    const string TempMarker = "~upload";
    const int MaxSegmentLength = 255; // NAME_MAX of common Linux file systems
    const int CopyBufferSize = 128 * 1024;
    const UnixFileMode FileMode600 = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    const UnixFileMode DirMode700 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    readonly byte[] _signingKey;
    readonly string _publicBase;
    readonly TimeProvider _time;
    readonly ILogger _logger;

    public DirectoryBlobStore(string rootDirectory, Uri publicBaseUrl, TimeProvider time, ILogger<DirectoryBlobStore> logger)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(rootDirectory);
        Root = Path.GetFullPath(rootDirectory);
        _publicBase = publicBaseUrl.AbsoluteUri.TrimEnd('/');
        _time = time;
        _logger = logger;
        CreateDirectory(Root);
        _signingKey = LoadOrCreateSigningKey();
    }

    /// <summary>Absolute path of the blobs directory.</summary>
    public string Root { get; }

    public async Task PutAsync(string key, Stream content, string? contentType, CancellationToken ct)
    {
        ValidateKey(key);
        ArgumentNullException.ThrowIfNull(content);
        var path = PathOf(key);
        var dir = Path.GetDirectoryName(path)!;
        if (Directory.Exists(path)) throw FolderConflict(key); // fail before receiving the body

        // A concurrent delete may prune the (empty) directory between creating it and creating the temp file: retry.
        for (var attempt = 1; ; attempt++)
        {
            CreateParentDirectories(key, dir);
            var temp = Path.Combine(dir, $".{Guid.NewGuid():N}{TempMarker}"); // short: fits NAME_MAX whatever the key
            FileStream file;
            try
            {
                file = new FileStream(temp, PrivateNewFile(FileOptions.Asynchronous));
            }
            catch (DirectoryNotFoundException) when (attempt < 5)
            {
                continue;
            }

            try
            {
                await using (file)
                {
                    await content.CopyToAsync(file, CopyBufferSize, ct);
                    file.Flush(flushToDisk: true);
                }
                if (Directory.Exists(path)) throw FolderConflict(key);
                File.Move(temp, path, overwrite: true);
            }
            catch
            {
                TryDeleteFile(temp);
                throw;
            }
            Fsync.Directory(dir);
            return;
        }
    }

    static BlobConflictException FolderConflict(string key) =>
        new($"Cannot store blob '{key}': '{key}/' is a folder of other blobs, and the Directory blob store cannot hold a key that is also the folder of other keys.");

    public Task<Stream?> OpenReadAsync(string key, CancellationToken ct)
    {
        ValidateKey(key);
        ct.ThrowIfCancellationRequested();
        return Task.FromResult<Stream?>(OpenRead(key, out _));
    }

    /// <summary>Opens the blob's file (null when missing) and reports its metadata; used by the presigned GET endpoint.</summary>
    internal FileStream? OpenRead(string key, out FileInfo info)
    {
        var path = PathOf(key);
        info = new FileInfo(path);
        try
        {
            var stream = new FileStream(path, new FileStreamOptions
            {
                Mode = FileMode.Open,
                Access = FileAccess.Read,
                Share = FileShare.ReadWrite | FileShare.Delete,
                BufferSize = 0,
                Options = FileOptions.Asynchronous | FileOptions.SequentialScan,
            });
            info.Refresh();
            return stream;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException
                                   || (ex is UnauthorizedAccessException && Directory.Exists(path)))
        {
            // A missing file, a missing parent, or a folder at that path: no such blob.
            return null;
        }
    }

    public Task<bool> ExistsAsync(string key, CancellationToken ct)
    {
        ValidateKey(key);
        ct.ThrowIfCancellationRequested();
        return Task.FromResult(File.Exists(PathOf(key)));
    }

    public Task DeleteAsync(string key, CancellationToken ct)
    {
        ValidateKey(key);
        ct.ThrowIfCancellationRequested();
        var path = PathOf(key);
        if (!File.Exists(path)) return Task.CompletedTask;
        try
        {
            File.Delete(path);
        }
        catch (DirectoryNotFoundException)
        {
            return Task.CompletedTask;
        }
        PruneEmptyParents(Path.GetDirectoryName(path)!);
        return Task.CompletedTask;
    }

    public async IAsyncEnumerable<BlobInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken ct)
    {
        BlobKey.ValidatePrefix(prefix);
        await Task.Yield();

        // Start at the deepest folder the prefix fully names, then filter by the string prefix (S3 semantics:
        // "logs/2026-0" matches "logs/2026-01/x" and "logs/2026-02.tar").
        var slash = prefix.LastIndexOf('/');
        var startKey = slash < 0 ? "" : prefix[..(slash + 1)];
        var startDir = startKey.Length == 0 ? Root : PathOf(startKey.TrimEnd('/'));
        if (!Directory.Exists(startDir)) yield break;

        foreach (var info in Walk(new DirectoryInfo(startDir), startKey, prefix, ct))
            yield return info;
    }

    /// <summary>Depth-first, entries sorted so that the yielded keys are in ordinal order (a folder sorts as "name/").</summary>
    IEnumerable<BlobInfo> Walk(DirectoryInfo dir, string keyPrefix, string filter, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        FileSystemInfo[] entries;
        try
        {
            entries = dir.GetFileSystemInfos();
        }
        catch (DirectoryNotFoundException)
        {
            yield break; // deleted while listing
        }

        var sorted = entries
            .Select(e => (Entry: e, SortKey: keyPrefix + e.Name + (e is DirectoryInfo ? "/" : "")))
            .Where(e => !e.Entry.Attributes.HasFlag(FileAttributes.ReparsePoint) || e.Entry is FileInfo)
            .OrderBy(e => e.SortKey, StringComparer.Ordinal);

        foreach (var (entry, sortKey) in sorted)
        {
            // Skip subtrees and files that cannot match the prefix.
            var common = Math.Min(sortKey.Length, filter.Length);
            if (string.CompareOrdinal(sortKey, 0, filter, 0, common) != 0) continue;

            if (entry is DirectoryInfo sub)
            {
                foreach (var item in Walk(sub, sortKey, filter, ct))
                    yield return item;
            }
            else if (entry is FileInfo file && sortKey.StartsWith(filter, StringComparison.Ordinal) && IsBlobFile(sortKey))
            {
                yield return new BlobInfo(sortKey, file.Length, file.LastWriteTimeUtc);
            }
        }
    }

    // Temp files contain '~' (not a key character), the signing key is reserved, foreign files with odd names are ignored.
    static bool IsBlobFile(string key) => key != PresignKeyFileName && BlobKey.IsValid(key);

    public Uri PresignUpload(string key, TimeSpan validFor) => Presign("PUT", key, validFor);

    public Uri PresignDownload(string key, TimeSpan validFor) => Presign("GET", key, validFor);

    Uri Presign(string method, string key, TimeSpan validFor)
    {
        ValidateKey(key);
        if (validFor <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(validFor), validFor, "A presigned URL must be valid for a positive time.");
        var expires = _time.GetUtcNow().Add(validFor).ToUnixTimeSeconds();
        var sig = Sign(method, key, expires);
        var path = string.Join('/', key.Split('/').Select(Uri.EscapeDataString));
        return new Uri($"{_publicBase}{EndpointPrefix}{path}?expires={expires.ToString(CultureInfo.InvariantCulture)}&sig={sig}");
    }

    string Sign(string method, string key, long expires) =>
        System.Buffers.Text.Base64Url.EncodeToString(SignatureBytes(method, key, expires));

    byte[] SignatureBytes(string method, string key, long expires) =>
        HMACSHA256.HashData(_signingKey, Encoding.UTF8.GetBytes($"{method}\n{key}\n{expires.ToString(CultureInfo.InvariantCulture)}"));

    /// <summary>Checks a presigned request; null when it is valid, otherwise why it is rejected.</summary>
    internal string? CheckSignature(string method, string key, string? expires, string? sig)
    {
        if (string.IsNullOrEmpty(expires) || string.IsNullOrEmpty(sig))
            return "The URL is not presigned: the 'expires' and 'sig' query parameters are required.";
        if (!long.TryParse(expires, NumberStyles.None, CultureInfo.InvariantCulture, out var expiresUnix))
            return "The URL's 'expires' parameter is not a Unix time in seconds.";

        var expected = SignatureBytes(method, key, expiresUnix);
        byte[] given;
        try
        {
            given = System.Buffers.Text.Base64Url.DecodeFromChars(sig);
        }
        catch (FormatException)
        {
            return "The URL's signature is invalid (it was altered, signed by another coordinator, or is for another method or key).";
        }
        if (!CryptographicOperations.FixedTimeEquals(expected, given))
            return $"The URL's signature is invalid for {method} of this key (it was altered, signed by another coordinator, or is for another method or key).";

        var now = _time.GetUtcNow();
        var expiresAt = DateTimeOffset.FromUnixTimeSeconds(expiresUnix);
        if (now > expiresAt)
            return $"The URL expired at {expiresAt:yyyy-MM-dd'T'HH:mm:ss'Z'} (now {now:yyyy-MM-dd'T'HH:mm:ss'Z'}); ask for a new one.";
        return null;
    }

    void ValidateKey(string key)
    {
        BlobKey.Validate(key);
        if (key == PresignKeyFileName)
            throw new ArgumentException($"Invalid blob key '{key}': the name is reserved by the Directory blob store for its URL-signing key.", nameof(key));
        if (key.Split('/').FirstOrDefault(s => s.Length > MaxSegmentLength) is { } longSegment)
            throw new ArgumentException($"Invalid blob key {BlobKey.Describe(key)}: its segment '{longSegment[..20]}…' is {longSegment.Length} characters long; the Directory blob store allows at most {MaxSegmentLength} per segment (a file-name limit).", nameof(key));
    }

    string PathOf(string key) =>
        Path.Combine(Root, Path.DirectorySeparatorChar == '/' ? key : key.Replace('/', Path.DirectorySeparatorChar));

    void CreateParentDirectories(string key, string dir)
    {
        try
        {
            CreateDirectory(dir);
        }
        catch (IOException ex) when (ex is not DirectoryNotFoundException)
        {
            // Some ancestor of the target is a file, i.e. an existing blob.
            var segments = key.Split('/');
            for (var i = 1; i < segments.Length; i++)
            {
                var ancestor = string.Join('/', segments[..i]);
                if (File.Exists(PathOf(ancestor)))
                    throw new BlobConflictException($"Cannot store blob '{key}': '{ancestor}' is already a blob, and the Directory blob store cannot hold a key that is also the folder of other keys.", ex);
            }
            throw;
        }
    }

    /// <summary>Options of a new file readable only by the coordinator's user (0600).</summary>
    static FileStreamOptions PrivateNewFile(FileOptions options)
    {
        var o = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 0, Options = options };
        if (!OperatingSystem.IsWindows()) o.UnixCreateMode = FileMode600;
        return o;
    }

    static void CreateDirectory(string dir)
    {
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(dir);
        else Directory.CreateDirectory(dir, DirMode700);
    }

    void PruneEmptyParents(string dir)
    {
        while (dir.Length > Root.Length && dir.StartsWith(Root, StringComparison.Ordinal))
        {
            try
            {
                Directory.Delete(dir, recursive: false);
            }
            catch (IOException) { return; }                  // not empty (or already gone)
            catch (UnauthorizedAccessException) { return; }
            dir = Path.GetDirectoryName(dir)!;
        }
    }

    static void TryDeleteFile(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    byte[] LoadOrCreateSigningKey()
    {
        var path = Path.Combine(Root, PresignKeyFileName);
        if (!File.Exists(path))
        {
            var key = RandomNumberGenerator.GetBytes(32);
            var temp = Path.Combine(Root, $".{Guid.NewGuid():N}{TempMarker}");
            try
            {
                using (var f = new FileStream(temp, PrivateNewFile(FileOptions.None)))
                {
                    f.Write(Encoding.ASCII.GetBytes(Convert.ToBase64String(key) + "\n"));
                    f.Flush(flushToDisk: true);
                }
                File.Move(temp, path, overwrite: false); // another process may have won the race: use its key
                Fsync.Directory(Root);
                _logger.LogInformation("Generated the blob URL-signing key {Path}", path);
                return key;
            }
            catch (IOException) when (File.Exists(path))
            {
                TryDeleteFile(temp);
            }
        }

        if (!OperatingSystem.IsWindows())
        {
            var mode = File.GetUnixFileMode(path);
            if ((mode & ~FileMode600) != 0)
            {
                _logger.LogWarning("The blob URL-signing key {Path} had mode {Mode}; restricting it to 0600", path, mode);
                File.SetUnixFileMode(path, FileMode600);
            }
        }
        var text = File.ReadAllText(path).Trim();
        byte[] loaded;
        try
        {
            loaded = Convert.FromBase64String(text);
        }
        catch (FormatException ex)
        {
            throw new InvalidOperationException($"The blob URL-signing key {path} is not base64. Delete it to generate a new one (outstanding presigned URLs stop working).", ex);
        }
        if (loaded.Length < 32)
            throw new InvalidOperationException($"The blob URL-signing key {path} holds {loaded.Length} bytes; at least 32 are required. Delete it to generate a new one (outstanding presigned URLs stop working).");
        return loaded;
    }

    /// <summary>fsync of a directory after a rename, so the new name survives a power loss (POSIX only; best effort).</summary>
    static class Fsync
    {
        public static void Directory(string path)
        {
            if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS() && !OperatingSystem.IsFreeBSD()) return;
            try
            {
                var fd = open(Encoding.UTF8.GetBytes(path + "\0"), 0 /* O_RDONLY */);
                if (fd < 0) return;
                try { _ = fsync(fd); }
                finally { _ = close(fd); }
            }
            catch (DllNotFoundException) { }
            catch (EntryPointNotFoundException) { }
        }

        [DllImport("libc", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        static extern int open(byte[] nullTerminatedUtf8Path, int flags);

        [DllImport("libc", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        static extern int fsync(int fd);

        [DllImport("libc")]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        static extern int close(int fd);
    }
}
