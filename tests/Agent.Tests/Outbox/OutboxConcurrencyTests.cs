using System.Buffers.Binary;
using System.Collections.Concurrent;
using Fleet.Agent.Outbox;
using Fleet.Testing;
using static Fleet.Agent.Tests.Outbox.OutboxTestSupport;

namespace Fleet.Agent.Tests.Outbox;

public class OutboxConcurrencyTests
{
    [Fact]
    public async Task Concurrent_appenders_get_unique_gap_free_counters_and_every_record_is_readable()
    {
        const int producers = 8;
        const int perProducer = 500;
        const int total = producers * perProducer;
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path, segmentBytes: 64 * 1024);

        // A sender reads and acknowledges while the producers append.
        var received = new List<OutboxRecord>();
        using var stop = new CancellationTokenSource();
        var sender = Task.Run(async () =>
        {
            while (received.Count < total)
            {
                var record = await outbox.ReadNextAsync(stop.Token);
                received.Add(record);
                if (record.Key.Counter % 2 == 0) outbox.Acknowledge(record.Key);
            }
        });

        var keys = new ConcurrentBag<(int Producer, int Seq, OutboxKey Key)>();
        var appenders = Enumerable.Range(0, producers).Select(p => Task.Run(async () =>
        {
            for (var s = 0; s < perProducer; s++)
            {
                var payload = new byte[64];
                BinaryPrimitives.WriteInt32LittleEndian(payload, p);
                BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(4), s);
                keys.Add((p, s, await outbox.AppendOk(payload)));
            }
        })).ToArray();
        await Task.WhenAll(appenders).DefaultTimeout();
        await sender.DefaultTimeout();

        var counters = keys.Select(k => k.Key.Counter).Order().ToArray();
        Assert.Equal(total, counters.Length);
        Assert.Equal(Enumerable.Range(0, total).Select(i => counters[0] + (ulong)i), counters); // unique and gap-free
        Assert.All(keys, k => Assert.Equal(outbox.Epoch, k.Key.Epoch));

        // Handed out exactly once each, in key order, with the right payloads, each producer's records in its order.
        Assert.Equal(counters, received.Select(r => r.Key.Counter));
        var byKey = keys.ToDictionary(k => k.Key);
        foreach (var record in received)
        {
            var (p, s, _) = byKey[record.Key];
            Assert.Equal(p, BinaryPrimitives.ReadInt32LittleEndian(record.Payload.Span));
            Assert.Equal(s, BinaryPrimitives.ReadInt32LittleEndian(record.Payload.Span[4..]));
        }
        foreach (var group in keys.GroupBy(k => k.Producer))
        {
            var inOrder = group.OrderBy(k => k.Seq).Select(k => k.Key.Counter).ToArray();
            Assert.Equal(inOrder.Order(), inOrder);
        }
        Assert.Equal(total / 2, outbox.PendingRecords);
        Assert.Equal(0, outbox.DroppedRecords);

        // And after a rewind, exactly the unacknowledged half comes back.
        outbox.Rewind();
        var again = await outbox.ReadAvailable();
        Assert.Equal(counters.Where(c => c % 2 == 1), again.Select(r => r.Key.Counter));
    }

    [Fact]
    public async Task Reader_racing_group_commits_across_segment_rolls_misses_nothing()
    {
        // Tiny segments: nearly every group commit rolls over to a new segment while the reader is scanning.
        const int producers = 16;
        const int perProducer = 150;
        const int total = producers * perProducer;
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path, segmentBytes: 200);

        var received = new List<ulong>();
        var sender = Task.Run(async () =>
        {
            while (received.Count < total)
            {
                var record = await outbox.ReadNextAsync(CancellationToken.None);
                received.Add(record.Key.Counter);
                outbox.Acknowledge(record.Key);
            }
        });
        var appenders = Enumerable.Range(0, producers).Select(p => Task.Run(async () =>
        {
            for (var s = 0; s < perProducer; s++)
                await outbox.AppendOk(Payload(s, 40));
        })).ToArray();
        await Task.WhenAll(appenders).DefaultTimeout();
        await sender.DefaultTimeout(TimeSpan.FromSeconds(10));

        Assert.Equal(received.Order(), received);
        Assert.Equal(total, received.Distinct().Count());
        Assert.Equal(0, outbox.PendingRecords);
        Assert.True(SegmentFiles(dir.Path).Length <= 1);
    }

    [Fact]
    public async Task Cancelled_appends_are_either_not_written_or_reported()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path);
        var appended = new ConcurrentBag<OutboxKey>();
        var cancelled = 0;
        var tasks = Enumerable.Range(0, 200).Select(i => Task.Run(async () =>
        {
            using var cts = new CancellationTokenSource();
            if (i % 3 == 0) cts.CancelAfter(TimeSpan.FromTicks(i * 10));
            try
            {
                var result = await outbox.AppendAsync(Payload(i, 32), cts.Token);
                Assert.Equal(AppendStatus.Appended, result.Status);
                appended.Add(result.Key);
            }
            catch (OperationCanceledException)
            {
                Interlocked.Increment(ref cancelled);
            }
        })).ToArray();
        await Task.WhenAll(tasks).DefaultTimeout();

        // Exactly the appends reported as Appended are in the outbox: a cancelled one never sneaks in.
        var records = await outbox.ReadAvailable();
        Assert.Equal(appended.Select(k => k.Counter).Order(), records.Select(r => r.Key.Counter).Order());
        Assert.Equal(200, appended.Count + cancelled);
    }
}
