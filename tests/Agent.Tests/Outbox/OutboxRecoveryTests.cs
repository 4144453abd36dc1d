using Fleet.Agent.Outbox;
using Fleet.Testing;
using Microsoft.Extensions.Logging;
using static Fleet.Agent.Tests.Outbox.OutboxTestSupport;

namespace Fleet.Agent.Tests.Outbox;

/// <summary>What a kill -9 or disk damage leaves behind, and what the outbox makes of it on open.</summary>
public class OutboxRecoveryTests
{
    private const int HeaderSize = 28;
    private const int PayloadSize = 50;
    private const int FrameSize = HeaderSize + PayloadSize;

    [Fact]
    public async Task Torn_write_at_every_byte_offset_of_the_last_record_keeps_every_earlier_record()
    {
        using var template = new TempDirectory();
        var keys = new List<OutboxKey>();
        ulong epoch;
        await using (var outbox = Open(template.Path))
        {
            epoch = outbox.Epoch;
            for (var i = 0; i < 5; i++)
                keys.Add(await outbox.AppendOk(Payload(i, PayloadSize)));
        }
        var segmentName = Path.GetFileName(Assert.Single(SegmentFiles(template.Path)));
        Assert.Equal(5 * FrameSize, new FileInfo(Path.Combine(template.Path, segmentName)).Length);

        var lastStart = 4 * FrameSize;
        for (var cut = lastStart; cut < 5 * FrameSize; cut++)
        {
            using var dir = new TempDirectory();
            CopyDirectory(template.Path, dir.Path);
            var segment = Path.Combine(dir.Path, segmentName);
            using (var stream = new FileStream(segment, FileMode.Open))
                stream.SetLength(cut);

            var logger = new ListLogger<DurableOutbox>();
            await using (var outbox = Open(dir.Path, logger: logger))
            {
                Assert.Equal(epoch, outbox.Epoch);
                Assert.Equal(0, outbox.DroppedRecords); // the torn record was never reported Appended
                Assert.Equal(4, outbox.PendingRecords);
                var records = await outbox.ReadAvailable();
                Assert.Equal(keys.Take(4), records.Select(r => r.Key));
                for (var i = 0; i < 4; i++)
                    Assert.Equal(Payload(i, PayloadSize), records[i].Payload.ToArray());
                if (cut > lastStart)
                    Assert.True(logger.Has(LogLevel.Warning, "torn"), $"cut at {cut}: the truncation was not logged");
                Assert.Equal(lastStart, new FileInfo(segment).Length); // torn tail cut off

                // Appending still works, and never reuses the torn record's counter.
                var next = await outbox.AppendOk(Payload("after crash"));
                Assert.True(next.Counter > keys[^1].Counter);
                Assert.Equal(next, (await outbox.Next()).Key);
            }
            await using (var again = Open(dir.Path))
            {
                Assert.Equal(5, again.PendingRecords);
                Assert.Equal(0, again.DroppedRecords);
            }
        }
    }

    [Fact]
    public async Task Torn_write_in_a_later_segment_keeps_the_earlier_segments()
    {
        using var dir = new TempDirectory();
        var keys = new List<OutboxKey>();
        await using (var outbox = Open(dir.Path, segmentBytes: 4 * FrameSize))
        {
            for (var i = 0; i < 10; i++)
                keys.Add(await outbox.AppendOk(Payload(i, PayloadSize)));
        }
        var files = SegmentFiles(dir.Path);
        Assert.Equal(3, files.Length);
        using (var stream = new FileStream(files[^1], FileMode.Open))
            stream.SetLength(FrameSize + 7); // second record of the last segment torn in its header

        await using var reopened = Open(dir.Path, segmentBytes: 4 * FrameSize);
        var records = await reopened.ReadAvailable();
        Assert.Equal(keys.Take(9), records.Select(r => r.Key));
        Assert.Equal(0, reopened.DroppedRecords);
    }

    [Theory]
    [InlineData(0, "magic")]
    [InlineData(5, "checksum")]
    [InlineData(8, "length, low byte")]
    [InlineData(11, "length, high byte")]
    [InlineData(14, "epoch")]
    [InlineData(22, "counter")]
    [InlineData(HeaderSize + 10, "payload")]
    [InlineData(FrameSize - 1, "last payload byte")]
    public async Task Flipped_byte_in_the_middle_keeps_earlier_records_and_drops_the_rest_of_the_segment(int offsetInRecord, string what)
    {
        using var dir = new TempDirectory();
        var keys = new List<OutboxKey>();
        await using (var outbox = Open(dir.Path))
        {
            for (var i = 0; i < 10; i++)
                keys.Add(await outbox.AppendOk(Payload(i, PayloadSize)));
        }
        var segment = Assert.Single(SegmentFiles(dir.Path));
        var bytes = File.ReadAllBytes(segment);
        bytes[(4 * FrameSize) + offsetInRecord] ^= 0x5A; // damage the 5th record
        File.WriteAllBytes(segment, bytes);

        var logger = new ListLogger<DurableOutbox>();
        await using (var outbox = Open(dir.Path, logger: logger))
        {
            var records = await outbox.ReadAvailable();
            Assert.True(keys.Take(4).SequenceEqual(records.Select(r => r.Key)), $"damaged {what}: kept {records.Count} records");
            Assert.Equal(6, outbox.DroppedRecords); // the damaged record and the 5 intact ones after it
            Assert.Equal(4, outbox.PendingRecords);
            Assert.True(logger.Has(LogLevel.Error, "corrupt"));

            var next = await outbox.AppendOk(Payload("after"));
            Assert.True(next.Counter > keys[^1].Counter);
        }
        // The damage was cut away: a second open does not count it again.
        await using var again = Open(dir.Path);
        Assert.Equal(0, again.DroppedRecords);
        Assert.Equal(5, again.PendingRecords);
    }

    [Fact]
    public async Task Damage_in_one_segment_does_not_affect_the_others()
    {
        using var dir = new TempDirectory();
        var keys = new List<OutboxKey>();
        await using (var outbox = Open(dir.Path, segmentBytes: 4 * FrameSize))
        {
            for (var i = 0; i < 12; i++)
                keys.Add(await outbox.AppendOk(Payload(i, PayloadSize)));
        }
        var files = SegmentFiles(dir.Path);
        Assert.Equal(3, files.Length);
        var bytes = File.ReadAllBytes(files[1]);
        bytes[FrameSize + HeaderSize + 3] ^= 0x01; // 2nd record of the middle segment (key index 5)
        File.WriteAllBytes(files[1], bytes);

        await using var reopened = Open(dir.Path, segmentBytes: 4 * FrameSize);
        var records = await reopened.ReadAvailable();
        Assert.Equal(new[] { 0, 1, 2, 3, 4, 8, 9, 10, 11 }.Select(i => keys[i]), records.Select(r => r.Key));
        Assert.Equal(3, reopened.DroppedRecords);
    }

    [Fact]
    public async Task Garbage_segment_files_never_make_open_throw()
    {
        using var dir = new TempDirectory();
        await using (var outbox = Open(dir.Path))
            await outbox.AppendOk(Payload("kept"));

        File.WriteAllBytes(Path.Combine(dir.Path, "00000000000000000007.seg"), [1, 2, 3]);
        File.WriteAllBytes(Path.Combine(dir.Path, "00000000000000000008.seg"), new byte[4096]); // zero-filled
        var random = new byte[10_000];
        new Random(42).NextBytes(random);
        File.WriteAllBytes(Path.Combine(dir.Path, "00000000000000000009.seg"), random);
        File.WriteAllBytes(Path.Combine(dir.Path, "not-a-segment.seg"), random);
        File.WriteAllBytes(Path.Combine(dir.Path, "outbox.acks"), random.AsSpan(0, 33).ToArray());

        await using var reopened = Open(dir.Path);
        var record = Assert.Single(await reopened.ReadAvailable());
        Assert.Equal("kept", Text(record));
        var key = await reopened.AppendOk(Payload("new"));
        Assert.Equal(key, (await reopened.Next()).Key);
        // New segments are numbered after every existing one.
        Assert.Contains(SegmentFiles(dir.Path), f => Path.GetFileName(f) == "00000000000000000010.seg");
    }

    [Fact]
    public async Task A_record_damaged_after_open_is_dropped_when_read_instead_of_blocking_the_sender()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path);
        var a = await outbox.AppendOk(Payload(0, PayloadSize));
        var b = await outbox.AppendOk(Payload(1, PayloadSize));
        var c = await outbox.AppendOk(Payload(2, PayloadSize));

        var segment = Assert.Single(SegmentFiles(dir.Path));
        using (var stream = new FileStream(segment, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete))
        {
            stream.Position = FrameSize + HeaderSize + 1;
            stream.WriteByte(0xEE);
        }

        Assert.Equal(a, (await outbox.Next()).Key);
        Assert.Equal(c, (await outbox.Next()).Key);
        Assert.Equal(1, outbox.DroppedRecords);
        Assert.Equal(2, outbox.PendingRecords);
        outbox.Rewind();
        Assert.Equal([a, c], (await outbox.ReadAvailable()).Select(r => r.Key));
        _ = b;
    }
}
