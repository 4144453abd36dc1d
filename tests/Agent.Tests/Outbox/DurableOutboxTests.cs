using Fleet.Agent.Outbox;
using Fleet.Testing;
using static Fleet.Agent.Tests.Outbox.OutboxTestSupport;

namespace Fleet.Agent.Tests.Outbox;

public class DurableOutboxTests
{
    [Fact]
    public async Task Append_read_acknowledge_round_trip()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path);

        var key = await outbox.AppendOk(Payload("hello"));
        Assert.Equal(outbox.Epoch, key.Epoch);
        Assert.NotEqual(0UL, outbox.Epoch);
        Assert.Equal(1, outbox.PendingRecords);
        Assert.Equal(5, outbox.PendingBytes);

        var record = await outbox.Next();
        Assert.Equal(key, record.Key);
        Assert.Equal("hello", Text(record));
        Assert.Equal(1, outbox.PendingRecords); // handed out, not yet acknowledged

        outbox.Acknowledge(record.Key);
        Assert.Equal(0, outbox.PendingRecords);
        Assert.Equal(0, outbox.PendingBytes);
        Assert.Equal(0, outbox.DroppedRecords);

        outbox.Rewind();
        Assert.Empty(await outbox.ReadAvailable());
    }

    [Fact]
    public async Task Records_are_handed_out_in_key_order()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path, segmentBytes: 1024); // several segments

        var keys = new List<OutboxKey>();
        for (var i = 0; i < 100; i++)
            keys.Add(await outbox.AppendOk(Payload(i, 100)));

        for (var i = 1; i < keys.Count; i++)
            Assert.Equal(keys[i - 1].Counter + 1, keys[i].Counter);

        for (var i = 0; i < 100; i++)
        {
            var record = await outbox.Next();
            Assert.Equal(keys[i], record.Key);
            Assert.Equal(Payload(i, 100), record.Payload.ToArray());
        }
        Assert.True(SegmentFiles(dir.Path).Length > 5);
    }

    [Fact]
    public async Task ReadNext_waits_for_an_append_without_polling()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path);

        var pending = outbox.ReadNextAsync(CancellationToken.None).AsTask();
        await Task.Yield();
        Assert.False(pending.IsCompleted); // nothing to read: it waits (on a signal, not a timer)

        var key = await outbox.AppendOk(Payload("late"));
        var record = await pending.DefaultTimeout(TimeSpan.FromSeconds(10));
        Assert.Equal(key, record.Key);
    }

    [Fact]
    public async Task ReadNext_honours_cancellation_and_dispose()
    {
        using var dir = new TempDirectory();
        var outbox = Open(dir.Path);

        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await outbox.ReadNextAsync(cts.Token));

        var waiting = outbox.ReadNextAsync(CancellationToken.None).AsTask();
        await outbox.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.DefaultTimeout(TimeSpan.FromSeconds(10)));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await outbox.AppendAsync(Payload("x"), CancellationToken.None));
        outbox.Acknowledge(new OutboxKey(outbox.Epoch, 1)); // harmless after dispose
        await outbox.DisposeAsync(); // idempotent
    }

    [Fact]
    public async Task Rewind_hands_out_every_unacknowledged_record_again_in_order()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path, segmentBytes: 512);

        var keys = new List<OutboxKey>();
        for (var i = 0; i < 10; i++)
            keys.Add(await outbox.AppendOk(Payload(i, 100)));
        for (var i = 0; i < 10; i++)
            Assert.Equal(keys[i], (await outbox.Next()).Key);

        outbox.Acknowledge(keys[0]);
        outbox.Acknowledge(keys[2]);
        outbox.Acknowledge(keys[4]);
        outbox.Rewind();

        int[] expected = [1, 3, 5, 6, 7, 8, 9];
        foreach (var i in expected)
        {
            var record = await outbox.Next();
            Assert.Equal(keys[i], record.Key);
            Assert.Equal(Payload(i, 100), record.Payload.ToArray());
        }
        Assert.Empty(await outbox.ReadAvailable());

        // Rewind mid-way through a second pass too.
        outbox.Rewind();
        Assert.Equal(keys[1], (await outbox.Next()).Key);
        Assert.Equal(keys[3], (await outbox.Next()).Key);
        outbox.Rewind();
        Assert.Equal(keys[1], (await outbox.Next()).Key);

        var later = await outbox.AppendOk(Payload("after"));
        var rest = await outbox.ReadAvailable();
        Assert.Equal([keys[3], keys[5], keys[6], keys[7], keys[8], keys[9], later], rest.Select(r => r.Key));
    }

    [Fact]
    public async Task Acknowledge_is_idempotent_and_ignores_unknown_keys()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path);
        var a = await outbox.AppendOk(Payload("a"));
        var b = await outbox.AppendOk(Payload("b"));

        outbox.Acknowledge(a);
        outbox.Acknowledge(a);
        outbox.Acknowledge(new OutboxKey(outbox.Epoch, 999_999));
        outbox.Acknowledge(new OutboxKey(outbox.Epoch + 1, b.Counter));
        outbox.Reject(a, "already acknowledged");

        Assert.Equal(1, outbox.PendingRecords);
        Assert.Equal(0, outbox.DroppedRecords);
        Assert.Equal(b, (await outbox.Next()).Key);
    }

    [Fact]
    public async Task Reject_removes_the_record_and_counts_it_as_dropped()
    {
        using var dir = new TempDirectory();
        var logger = new ListLogger<DurableOutbox>();
        await using (var outbox = Open(dir.Path, logger: logger))
        {
            var a = await outbox.AppendOk(Payload("a"));
            var b = await outbox.AppendOk(Payload("b"));
            outbox.Reject(a, "payload too large for the coordinator");
            outbox.Reject(a, "again");

            Assert.Equal(1, outbox.DroppedRecords);
            Assert.Equal(1, outbox.PendingRecords);
            Assert.True(logger.Has(Microsoft.Extensions.Logging.LogLevel.Warning, "payload too large for the coordinator"));
            Assert.Equal(b, (await outbox.Next()).Key);
            outbox.Rewind();
            Assert.Equal(b, (await outbox.Next()).Key);
        }
        await using var reopened = Open(dir.Path);
        Assert.Equal("b", Text(await reopened.Next()));
        Assert.Equal(1, reopened.PendingRecords);
    }

    [Fact]
    public async Task Reopen_returns_exactly_the_unacknowledged_records_with_the_same_keys_and_epoch()
    {
        using var dir = new TempDirectory();
        ulong epoch;
        var unacked = new List<(OutboxKey Key, byte[] Payload)>();
        await using (var outbox = Open(dir.Path, segmentBytes: 1024))
        {
            epoch = outbox.Epoch;
            for (var i = 0; i < 40; i++)
            {
                var payload = Payload(i, 90);
                var key = await outbox.AppendOk(payload);
                if (i % 3 == 0) outbox.Acknowledge(key);
                else unacked.Add((key, payload));
            }
            // Hand some out without acknowledging: they must still come back.
            for (var i = 0; i < 5; i++) await outbox.Next();
        }

        await using (var reopened = Open(dir.Path, segmentBytes: 1024))
        {
            Assert.Equal(epoch, reopened.Epoch);
            Assert.Equal(unacked.Count, reopened.PendingRecords);
            Assert.Equal(unacked.Sum(u => (long)u.Payload.Length), reopened.PendingBytes);
            var records = await reopened.ReadAvailable();
            Assert.Equal(unacked.Select(u => u.Key), records.Select(r => r.Key));
            Assert.Equal(unacked.Select(u => Convert.ToHexString(u.Payload)), records.Select(r => Convert.ToHexString(r.Payload.Span)));

            // New records continue after the old ones, in the same epoch.
            var next = await reopened.AppendOk(Payload("new"));
            Assert.Equal(epoch, next.Epoch);
            Assert.True(next.Counter > unacked[^1].Key.Counter);
            Assert.Equal(next, (await reopened.Next()).Key);
        }
    }

    [Fact]
    public async Task Acknowledgements_survive_reopen_even_when_the_journal_is_compacted()
    {
        using var dir = new TempDirectory();
        List<OutboxKey> keys;
        await using (var outbox = Open(dir.Path))
        {
            // Concurrent appends share fsyncs (group commit), which keeps this quick.
            keys = [.. (await Task.WhenAll(Enumerable.Range(0, 6000).Select(i => Task.Run(() => outbox.AppendOk(Payload(i, 8)))))).OrderBy(k => k.Counter)];
            // Out of order, all but one, all in the one open segment: > 64 KiB of journal, so it is compacted on the way.
            for (var i = keys.Count - 1; i >= 0; i--)
            {
                if (i != 1234) outbox.Acknowledge(keys[i]);
            }
            Assert.Equal(1, outbox.PendingRecords);
        }
        await using var reopened = Open(dir.Path);
        Assert.Equal(1, reopened.PendingRecords);
        var only = Assert.Single(await reopened.ReadAvailable());
        Assert.Equal(keys[1234], only.Key);
    }

    [Fact]
    public async Task Counter_keeps_increasing_across_reopens_even_when_everything_was_acknowledged()
    {
        using var dir = new TempDirectory();
        ulong epoch;
        ulong last;
        await using (var outbox = Open(dir.Path))
        {
            epoch = outbox.Epoch;
            OutboxKey key = default;
            for (var i = 0; i < 5; i++)
            {
                key = await outbox.AppendOk(Payload(i, 10));
                outbox.Acknowledge(key);
            }
            last = key.Counter;
        }
        Assert.Empty(SegmentFiles(dir.Path)); // nothing left but the state

        // Many cycles; each one burns the rest of a reserved block, which must not be a problem.
        for (var cycle = 0; cycle < 150; cycle++)
        {
            await using var outbox = Open(dir.Path);
            Assert.Equal(epoch, outbox.Epoch);
            var a = await outbox.AppendOk(Payload(cycle, 10));
            var b = await outbox.AppendOk(Payload(cycle, 10));
            Assert.True(a.Counter > last, $"cycle {cycle}: counter {a.Counter} not above {last}");
            Assert.Equal(a.Counter + 1, b.Counter);
            Assert.Equal(a, (await outbox.Next()).Key);
            Assert.Equal(b, (await outbox.Next()).Key);
            outbox.Acknowledge(a);
            outbox.Acknowledge(b);
            last = b.Counter;
        }
        Assert.Empty(SegmentFiles(dir.Path));

        // A reopen that never appends does not need to reserve anything, and still never goes backwards.
        for (var cycle = 0; cycle < 20; cycle++)
            await using (Open(dir.Path)) { }
        await using var final = Open(dir.Path);
        Assert.True((await final.AppendOk(Payload("x"))).Counter > last);
    }

    [Fact]
    public async Task Counter_is_not_reused_after_a_crash_without_dispose()
    {
        using var dir = new TempDirectory();
        using var copy = new TempDirectory();
        ulong last;
        await using (var outbox = Open(dir.Path))
        {
            OutboxKey key = default;
            for (var i = 0; i < 3; i++)
            {
                key = await outbox.AppendOk(Payload(i, 10));
                outbox.Acknowledge(key);
            }
            last = key.Counter;
            // Snapshot the files while open, as a kill -9 would leave them.
            CopyDirectory(dir.Path, copy.Path);
        }
        await using var recovered = Open(copy.Path);
        Assert.True((await recovered.AppendOk(Payload("x"))).Counter > last);
    }

    [Fact]
    public async Task Missing_state_file_starts_a_new_epoch_and_keeps_the_old_records_with_their_keys()
    {
        using var dir = new TempDirectory();
        ulong oldEpoch;
        OutboxKey oldKey;
        await using (var outbox = Open(dir.Path))
        {
            oldEpoch = outbox.Epoch;
            oldKey = await outbox.AppendOk(Payload("old"));
        }
        File.Delete(Path.Combine(dir.Path, "outbox.state"));

        var logger = new ListLogger<DurableOutbox>();
        await using (var outbox = Open(dir.Path, logger: logger))
        {
            Assert.NotEqual(oldEpoch, outbox.Epoch);
            Assert.Single(logger.Entries, e => e.Message.Contains("new epoch", StringComparison.Ordinal));
            var newKey = await outbox.AppendOk(Payload("new"));
            Assert.Equal(outbox.Epoch, newKey.Epoch);

            var first = await outbox.Next();
            Assert.Equal(oldKey, first.Key);
            Assert.Equal("old", Text(first));
            Assert.Equal(newKey, (await outbox.Next()).Key);
            outbox.Acknowledge(oldKey); // keys of the old epoch can still be acknowledged
            Assert.Equal(1, outbox.PendingRecords);
        }
    }

    [Fact]
    public async Task Corrupt_state_file_starts_a_new_epoch()
    {
        using var dir = new TempDirectory();
        ulong oldEpoch;
        await using (var outbox = Open(dir.Path))
        {
            oldEpoch = outbox.Epoch;
            outbox.Acknowledge(await outbox.AppendOk(Payload("x")));
        }
        var state = Path.Combine(dir.Path, "outbox.state");
        var bytes = File.ReadAllBytes(state);
        bytes[10] ^= 0xFF;  // slot 0
        bytes[522] ^= 0xFF; // slot 1
        File.WriteAllBytes(state, bytes);

        var logger = new ListLogger<DurableOutbox>();
        await using var reopened = Open(dir.Path, logger: logger);
        Assert.NotEqual(oldEpoch, reopened.Epoch);
        Assert.True(logger.Has(Microsoft.Extensions.Logging.LogLevel.Warning, "corrupt"));
        Assert.Equal(1UL, (await reopened.AppendOk(Payload("y"))).Counter);
    }

    [Fact]
    public async Task One_damaged_state_slot_is_survived_without_a_new_epoch()
    {
        using var dir = new TempDirectory();
        ulong epoch;
        ulong last;
        await using (var outbox = Open(dir.Path))
        {
            epoch = outbox.Epoch;
            last = (await outbox.AppendOk(Payload("x"))).Counter;
        }
        var state = Path.Combine(dir.Path, "outbox.state");
        var bytes = File.ReadAllBytes(state);
        bytes[512 + 20] ^= 0xFF; // the newest slot (generation 1) torn
        File.WriteAllBytes(state, bytes);

        await using var reopened = Open(dir.Path);
        Assert.Equal(epoch, reopened.Epoch);
        Assert.True((await reopened.AppendOk(Payload("y"))).Counter > last);
    }

    [Fact]
    public async Task A_second_outbox_on_the_same_directory_is_refused()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path);
        Assert.ThrowsAny<IOException>(() => Open(dir.Path));
        await outbox.AppendOk(Payload("still fine"));
    }

    [Fact]
    public async Task Segment_files_are_deleted_once_fully_acknowledged()
    {
        using var dir = new TempDirectory();
        await using (var outbox = Open(dir.Path, segmentBytes: 1024))
        {
            var keys = new List<OutboxKey>();
            for (var i = 0; i < 60; i++)
                keys.Add(await outbox.AppendOk(Payload(i, 100))); // 128 bytes framed: 8 per segment
            var files = SegmentFiles(dir.Path);
            Assert.Equal(8, files.Length);

            // Acknowledge the first segment's records except one: nothing can be deleted yet.
            for (var i = 0; i < 7; i++) outbox.Acknowledge(keys[i]);
            Assert.Equal(8, SegmentFiles(dir.Path).Length);
            outbox.Acknowledge(keys[7]);
            Assert.Equal(files[1..], SegmentFiles(dir.Path));

            // Rejected records count as done too.
            for (var i = 8; i < 16; i++) outbox.Reject(keys[i], "test");
            Assert.Equal(files[2..], SegmentFiles(dir.Path));

            foreach (var record in await outbox.ReadAvailable())
                outbox.Acknowledge(record.Key);
            Assert.Equal(0, outbox.PendingRecords);
            // Only the segment still open for appends may remain.
            Assert.Equal([files[^1]], SegmentFiles(dir.Path));
            Assert.Equal(128 * 4, outbox.DiskBytes);
        }
        Assert.Empty(SegmentFiles(dir.Path));
        await using var reopened = Open(dir.Path, segmentBytes: 1024);
        Assert.Equal(0, reopened.PendingRecords);
        Assert.Empty(await reopened.ReadAvailable());
    }

    [Fact]
    public async Task Empty_payloads_are_records_too()
    {
        using var dir = new TempDirectory();
        await using (var outbox = Open(dir.Path))
        {
            await outbox.AppendOk([]);
            await outbox.AppendOk(Payload("x"));
        }
        await using var reopened = Open(dir.Path);
        var records = await reopened.ReadAvailable();
        Assert.Equal(2, records.Count);
        Assert.Equal(0, records[0].Payload.Length);
    }
}
