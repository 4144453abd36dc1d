using System.Buffers;
using Fleet.Agent.Outbox;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;

namespace Fleet.Agent.Transport;

/// <summary>
/// One <see cref="AgentMessage"/> on the agent's stream: either a generated message (hello, heartbeat) or an outbox
/// record sent as it is. An outbox record is the protobuf encoding of a <see cref="Batch"/> without its key, so the
/// <c>AgentMessage{batch}</c> bytes are <c>tag(3, length-delimited) · varint(length) · key field · record</c>: no parse,
/// no second serialization, and byte for byte what <c>new AgentMessage { Batch = parsed-with-key }.ToByteArray()</c>
/// gives (the generated serializer writes field 1, the key, first).
/// </summary>
internal sealed class OutgoingMessage
{
    /// <summary>Tag of <c>AgentMessage.batch</c> (field 3, wire type 2).</summary>
    const byte BatchTag = 3 << 3 | 2;

    /// <summary>Tag of <c>Batch.key</c> (field 1, wire type 2).</summary>
    const byte KeyTag = 1 << 3 | 2;

    readonly byte[]? prefix;
    readonly OutboxRecord? pooled;

    OutgoingMessage(AgentMessage? message, byte[]? prefix, ReadOnlyMemory<byte> record, int length, OutboxRecord? pooled = null)
    {
        Message = message;
        this.prefix = prefix;
        Record = record;
        Length = length;
        this.pooled = pooled;
    }

    /// <summary>Hands a pooled record's buffer back (<see cref="DurableOutbox.Release"/>) once the message is written.</summary>
    public void Release()
    {
        if (pooled is not null) DurableOutbox.Release(pooled);
    }

    /// <summary>The generated message, or null for a record sent as it is.</summary>
    public AgentMessage? Message { get; }

    /// <summary>The outbox record (a key-less Batch) for a record sent as it is.</summary>
    public ReadOnlyMemory<byte> Record { get; }

    /// <summary>Encoded size of the whole AgentMessage in bytes.</summary>
    public int Length { get; }

    public static OutgoingMessage From(AgentMessage message) => new(message, null, default, message.CalculateSize());

    /// <summary>The AgentMessage carrying an outbox record as it is, with the record's key set; <see cref="Release"/>
    /// returns its buffer when it came from <see cref="DurableOutbox.ReadNextPooledAsync"/>.</summary>
    public static OutgoingMessage ForRecord(OutboxRecord record) => ForRecord(record.Key, record.Payload, record);

    /// <summary>The AgentMessage carrying <paramref name="record"/> (a Batch without key) with <paramref name="key"/> set.</summary>
    public static OutgoingMessage ForRecord(OutboxKey key, ReadOnlyMemory<byte> record, OutboxRecord? pooled = null)
    {
        var keyBody = VarintFieldSize(key.Epoch) + VarintFieldSize(key.Counter);
        var batchLength = (long)1 + CodedOutputStream.ComputeLengthSize(keyBody) + keyBody + record.Length;
        if (batchLength > int.MaxValue - 16) throw new ArgumentOutOfRangeException(nameof(record), record.Length, "record too large for one message");
        var prefix = new byte[1 + CodedOutputStream.ComputeLengthSize((int)batchLength) + 1 + CodedOutputStream.ComputeLengthSize(keyBody) + keyBody];
        var at = 0;
        prefix[at++] = BatchTag;
        at += WriteVarint(prefix.AsSpan(at), (ulong)batchLength);
        prefix[at++] = KeyTag;
        at += WriteVarint(prefix.AsSpan(at), (ulong)keyBody);
        if (key.Epoch != 0) { prefix[at++] = 1 << 3; at += WriteVarint(prefix.AsSpan(at), key.Epoch); }
        if (key.Counter != 0) { prefix[at++] = 2 << 3; at += WriteVarint(prefix.AsSpan(at), key.Counter); }
        return new OutgoingMessage(null, prefix, record, prefix.Length + record.Length, pooled);
    }

    /// <summary>Writes the encoded AgentMessage (for tests and diagnostics; the stream writes through <see cref="Marshaller"/>).</summary>
    public byte[] ToByteArray()
    {
        var writer = new ArrayBufferWriter<byte>(Length);
        WriteTo(writer);
        return writer.WrittenSpan.ToArray();
    }

    void WriteTo(IBufferWriter<byte> writer)
    {
        if (Message is { } message)
        {
            message.WriteTo(writer);
            return;
        }
        Copy(prefix, writer);
        Copy(Record.Span, writer);
    }

    static void Copy(ReadOnlySpan<byte> source, IBufferWriter<byte> writer)
    {
        while (source.Length > 0)
        {
            var span = writer.GetSpan(Math.Min(source.Length, 64 * 1024));
            var n = Math.Min(span.Length, source.Length);
            source[..n].CopyTo(span);
            writer.Advance(n);
            source = source[n..];
        }
    }

    static int VarintFieldSize(ulong value) => value == 0 ? 0 : 1 + CodedOutputStream.ComputeUInt64Size(value);

    static int WriteVarint(Span<byte> destination, ulong value)
    {
        var i = 0;
        while (value >= 0x80)
        {
            destination[i++] = (byte)(value | 0x80);
            value >>= 7;
        }
        destination[i++] = (byte)value;
        return i;
    }

    /// <summary>Serializes either form into gRPC's buffer (one copy of a record's bytes, no intermediate array).</summary>
    public static readonly Marshaller<OutgoingMessage> Marshaller = Marshallers.Create<OutgoingMessage>(
        static (message, context) =>
        {
            context.SetPayloadLength(message.Length);
            message.WriteTo(context.GetBufferWriter());
            context.Complete();
        },
        static context => throw new NotSupportedException("the agent only sends AgentMessages"));

    /// <summary><c>AgentGateway.Connect</c> with <see cref="OutgoingMessage"/> as its request type: same service and
    /// method name as the generated client, so the coordinator sees the same call and the same bytes.</summary>
    public static readonly Method<OutgoingMessage, CoordinatorMessage> Connect = new(
        MethodType.DuplexStreaming,
        AgentGateway.Descriptor.FullName,
        AgentGateway.Descriptor.FindMethodByName("Connect").Name,
        Marshaller,
        Marshallers.Create(
            static (CoordinatorMessage message, SerializationContext context) => throw new NotSupportedException("the agent never sends a CoordinatorMessage"),
            static context => CoordinatorMessage.Parser.ParseFrom(context.PayloadAsReadOnlySequence())));
}

/// <summary>
/// Cheap structural check of an outbox record before it is sent as it is: the top-level fields of a <see cref="Batch"/>
/// are walked (tags, wire types, lengths within the record; a length-delimited field is jumped over, not parsed).
/// O(number of top-level fields), two or three for every record the agent writes, against a full parse of a
/// 256 KiB batch per send. The record's bytes are CRC-checked by the outbox on every read and were written by the
/// generated serializer, so the walk is there for an agent bug (a record that is not a Batch, or one that already
/// carries a key); a record that fails it takes the old path (full parse, key set, re-serialized), which still
/// rejects an unreadable one.
/// </summary>
internal static class BatchRecord
{
    /// <summary>True when <paramref name="record"/> is a well-formed key-less Batch at the top level;
    /// <paramref name="payload"/> is its payload case (for logs).</summary>
    public static bool IsSendableAsIs(ReadOnlySpan<byte> record, out Batch.PayloadOneofCase payload)
    {
        payload = Batch.PayloadOneofCase.None;
        var at = 0;
        while (at < record.Length)
        {
            if (!TryReadVarint(record, ref at, out var tag) || tag > uint.MaxValue) return false;
            var field = tag >> 3;
            if (field == 0 || field == 1) return false; // no field 0; field 1 is the key we add
            switch (tag & 7)
            {
                case 0:
                    if (!TryReadVarint(record, ref at, out _)) return false;
                    break;
                case 1:
                    if ((at += 8) > record.Length) return false;
                    break;
                case 2:
                    if (!TryReadVarint(record, ref at, out var length) || length > (ulong)(record.Length - at)) return false;
                    at += (int)length;
                    if (field is >= 10 and <= 13) payload = (Batch.PayloadOneofCase)field;
                    break;
                case 5:
                    if ((at += 4) > record.Length) return false;
                    break;
                default:
                    return false; // groups (3, 4) and wire types 6, 7: never in a Batch
            }
        }
        return true;
    }

    static bool TryReadVarint(ReadOnlySpan<byte> data, ref int at, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if (at >= data.Length) return false;
            var b = data[at++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return true;
        }
        return false;
    }
}
