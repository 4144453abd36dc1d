using Fleet.Agent.Configuration;
using Fleet.Agent.Identity;
using Fleet.Agent.Outbox;
using Fleet.Agent.Tests.Outbox;
using Fleet.Agent.Transport;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Fleet.Agent.Tests.Transport;

/// <summary>Outbox records go out as they are (no parse, no second serialization): the coordinator's generated parser
/// must read exactly what the old parse-set-key-serialize path produced.</summary>
public sealed class RecordAsIsTests
{
    static Batch LogBatch(int entries, int messageBytes = 40) => new()
    {
        CreatedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(new DateTimeOffset(2026, 11, 29, 4, 0, 0, TimeSpan.Zero)),
        Logs = new LogBatch
        {
            Entries =
            {
                Enumerable.Range(0, entries).Select(i => new LogEntry
                {
                    Source = "app",
                    Path = "/var/log/app.log",
                    FileId = "803:1234:abcdef",
                    Offset = (ulong)(i * 100),
                    TimeUnixMs = 1_790_000_000_000 + i,
                    Severity = i % 2 == 0 ? "info" : "error",
                    Message = $"line {i} é ✓ " + new string('m', messageBytes),
                    Fields = { ["ip"] = "10.0.0." + i },
                }),
            },
        },
    };

    static (CoordinatorConnection Connection, AgentOptions Options, ListLogger<CoordinatorConnection> Logger) Connect(string state, DurableOutbox outbox, int? maxMessageBytes = null)
    {
        var options = new AgentOptions { StateDirectory = state };
        if (maxMessageBytes is { } max) options.MaxMessageBytes = max;
        var logger = new ListLogger<CoordinatorConnection>();
        return (new CoordinatorConnection(options, AgentIdentity.Load(options), outbox, new CentralConfig(), TimeProvider.System, logger), options, logger);
    }

    [Theory]
    [InlineData(0UL, 0UL)]
    [InlineData(1UL, 1UL)]
    [InlineData(0x1234_5678_9ABC_DEF0UL, 127UL)]
    [InlineData(ulong.MaxValue, 128UL)]
    public void Record_as_is_is_byte_identical_to_the_parsed_and_reserialized_message(ulong epoch, ulong counter)
    {
        var record = LogBatch(50).ToByteArray();

        var asIs = OutgoingMessage.ForRecord(new OutboxKey(epoch, counter), record).ToByteArray();

        var reparsed = Batch.Parser.ParseFrom(record);
        reparsed.Key = new BatchKey { Epoch = epoch, Counter = counter };
        var expected = new AgentMessage { Batch = reparsed };
        Assert.Equal(expected.ToByteArray(), asIs);
        Assert.Equal(expected.CalculateSize(), OutgoingMessage.ForRecord(new OutboxKey(epoch, counter), record).Length);
        var parsed = AgentMessage.Parser.ParseFrom(asIs);
        Assert.Equal(expected, parsed);
        Assert.Equal(epoch, parsed.Batch.Key.Epoch);
        Assert.Equal(counter, parsed.Batch.Key.Counter);
    }

    [Fact]
    public async Task Log_batch_from_the_outbox_reaches_the_coordinators_parser_with_its_key_and_entries_intact()
    {
        using var state = new TempDirectory();
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = state.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        var (connection, _, _) = Connect(state.Path, outbox);
        using var _connection = connection;
        var batch = LogBatch(2_000); // ~200 KiB: more than one varint byte of length at every level
        var key = await outbox.AppendOk(batch.ToByteArray());

        var message = await connection.NextBatchMessageAsync(CancellationToken.None).AsTask().DefaultTimeout();
        var parsed = AgentMessage.Parser.ParseFrom(message.ToByteArray());

        Assert.Null(message.Message); // the as-is path, not a parse and re-serialization
        Assert.Equal(AgentMessage.BodyOneofCase.Batch, parsed.BodyCase);
        Assert.Equal(new BatchKey { Epoch = key.Epoch, Counter = key.Counter }, parsed.Batch.Key);
        Assert.Equal(batch.CreatedAt, parsed.Batch.CreatedAt);
        Assert.Equal(batch.Logs, parsed.Batch.Logs);
        Assert.Equal(parsed.CalculateSize(), message.Length);
    }

    [Fact]
    public async Task Oversized_record_is_rejected_from_its_length_and_the_next_one_is_sent()
    {
        using var state = new TempDirectory();
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = state.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        var big = LogBatch(100, messageBytes: 1_000).ToByteArray(); // ~110 KB
        var small = LogBatch(3).ToByteArray();
        var (connection, options, logger) = Connect(state.Path, outbox, maxMessageBytes: 64 * 1024);
        using var _connection = connection;
        await outbox.AppendOk(big);
        var smallKey = await outbox.AppendOk(small);

        var message = await connection.NextBatchMessageAsync(CancellationToken.None).AsTask().DefaultTimeout();
        var parsed = AgentMessage.Parser.ParseFrom(message.ToByteArray());

        Assert.Equal(smallKey.Counter, parsed.Batch.Key.Counter);
        Assert.Equal(3, parsed.Batch.Logs.Entries.Count);
        Assert.Equal(1, connection.OversizedRecords);
        Assert.Equal(1, outbox.DroppedRecords);
        Assert.True(logger.Has(LogLevel.Warning, "(Logs) not sent"));
        Assert.True(logger.Has(LogLevel.Warning, $"exceeds the {options.MaxMessageBytes}-byte limit"));
    }

    [Fact]
    public async Task After_a_reconnect_the_resent_records_are_parsed_in_full_so_one_broken_inside_is_rejected_not_resent()
    {
        using var state = new TempDirectory();
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = state.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        var (connection, _, _) = Connect(state.Path, outbox);
        using var _connection = connection;
        // Well formed at the top (field logs, 3 bytes), broken inside (its field 1 says 16 bytes follow; one does).
        byte[] broken = [(Batch.LogsFieldNumber << 3) | 2, 0x03, 0x0A, 0x10, 0x01];
        Assert.True(BatchRecord.IsSendableAsIs(broken, out _));
        await outbox.AppendOk(broken);
        var good = await outbox.AppendOk(LogBatch(2).ToByteArray());

        // First stream: the broken record goes out as it is (the coordinator would fail the stream on it).
        var first = await connection.NextBatchMessageAsync(CancellationToken.None).AsTask().DefaultTimeout();
        Assert.Null(first.Message);
        Assert.Throws<Google.Protobuf.InvalidProtocolBufferException>(() => AgentMessage.Parser.ParseFrom(first.ToByteArray()));

        // The next stream sends the unacknowledged records again, parsed first: the broken one is rejected, the good one goes.
        connection.RewindOutbox();
        var again = await connection.NextBatchMessageAsync(CancellationToken.None).AsTask().DefaultTimeout();
        var parsed = AgentMessage.Parser.ParseFrom(again.ToByteArray());
        Assert.Equal(new BatchKey { Epoch = good.Epoch, Counter = good.Counter }, parsed.Batch.Key);
        Assert.Equal(1, outbox.DroppedRecords);
    }

    [Fact]
    public async Task Record_that_is_not_a_batch_is_rejected_and_one_that_carries_a_key_gets_the_outbox_key()
    {
        using var state = new TempDirectory();
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = state.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        var (connection, _, _) = Connect(state.Path, outbox);
        using var _connection = connection;
        var withKey = LogBatch(2);
        withKey.Key = new BatchKey { Epoch = 7, Counter = 7 };
        await outbox.AppendOk([0x62, 0x10, 0x01]); // field 12 says 16 bytes follow; one does
        var keyed = await outbox.AppendOk(withKey.ToByteArray());

        var message = await connection.NextBatchMessageAsync(CancellationToken.None).AsTask().DefaultTimeout();
        var parsed = AgentMessage.Parser.ParseFrom(message.ToByteArray());

        Assert.Equal(new BatchKey { Epoch = keyed.Epoch, Counter = keyed.Counter }, parsed.Batch.Key);
        Assert.Equal(withKey.Logs, parsed.Batch.Logs);
        Assert.Equal(1, outbox.DroppedRecords);
    }

    [Theory]
    [InlineData(new byte[] { }, true)]
    [InlineData(new byte[] { 0x12, 0x00, 0x62, 0x00 }, true)] // created_at {}, logs {}
    [InlineData(new byte[] { 0x0A, 0x00, 0x62, 0x00 }, false)] // already has a key
    [InlineData(new byte[] { 0x62, 0x05, 0x00 }, false)] // length past the end
    [InlineData(new byte[] { 0x62 }, false)] // truncated length
    [InlineData(new byte[] { 0x00 }, false)] // field 0
    [InlineData(new byte[] { 0x63 }, false)] // a group
    [InlineData(new byte[] { 0x61, 1, 2, 3 }, false)] // fixed64 past the end
    [InlineData(new byte[] { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 }, false)] // varint too long
    public void Structural_check_accepts_only_key_less_well_formed_batches(byte[] record, bool sendable)
    {
        Assert.Equal(sendable, BatchRecord.IsSendableAsIs(record, out _));
    }
}
