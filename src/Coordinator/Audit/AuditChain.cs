using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Fleet.Coordinator.Audit;

/// <summary>
/// The chain rule: hash(n) = SHA-256(hash(n-1) || canonical(row n)), with 32 zero bytes before the first row.
/// The canonical form length-prefixes every field, so no two different rows encode alike, and includes the
/// sequence number and row id, so moving a row to another place changes its hash.
/// </summary>
public static class AuditChain
{
    public static readonly byte[] Genesis = new byte[32];

    public readonly record struct Row(long Seq, long Id, DateTime Time, string ActorKind, string Actor, string RemoteAddress,
        string Action, string Target, string Host, string ParametersJson, string Outcome);

    public static byte[] Hash(ReadOnlySpan<byte> previous, in Row row)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(previous);
        Span<byte> number = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(number, row.Seq);
        hash.AppendData(number);
        BinaryPrimitives.WriteInt64BigEndian(number, row.Id);
        hash.AppendData(number);
        BinaryPrimitives.WriteInt64BigEndian(number, Microseconds(row.Time));
        hash.AppendData(number);
        Field(hash, row.ActorKind);
        Field(hash, row.Actor);
        Field(hash, row.RemoteAddress);
        Field(hash, row.Action);
        Field(hash, row.Target);
        Field(hash, row.Host);
        Field(hash, row.ParametersJson);
        Field(hash, row.Outcome);
        return hash.GetHashAndReset();
    }

    /// <summary>Times are hashed at microsecond precision (what PostgreSQL stores).</summary>
    public static long Microseconds(DateTime time) => (DateTime.SpecifyKind(time, DateTimeKind.Utc) - DateTime.UnixEpoch).Ticks / 10;

    public static DateTime TruncateToMicroseconds(DateTime time) => new(time.Ticks - time.Ticks % 10, DateTimeKind.Utc);

    static void Field(IncrementalHash hash, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, bytes.Length);
        hash.AppendData(length);
        hash.AppendData(bytes);
    }

    public static string Hex(byte[]? hash) => hash is null ? "" : Convert.ToHexStringLower(hash);
}
