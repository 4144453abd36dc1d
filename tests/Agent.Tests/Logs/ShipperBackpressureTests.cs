using Fleet.Agent.Logs;
using Fleet.Agent.Outbox;
using Fleet.Protocol.V1;
using Fleet.Testing;
using static Fleet.Agent.Tests.Outbox.OutboxTestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace Fleet.Agent.Tests.Logs;

/// <summary>A burst is read only as fast as it is written to the outbox: the shipper's queue has a bound readers wait on.</summary>
public sealed class ShipperBackpressureTests
{
    [Fact]
    public async Task AQueueAtItsBound_IsSaturated_UntilAFlushWritesItToTheOutbox()
    {
        using var dir = new TempDirectory();
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = dir.Combine("outbox") }, NullLogger<DurableOutbox>.Instance);
        var settings = new LogSettings { BatchMaxBytes = 16 * 1024 };
        var checkpoints = LogCheckpoints.Open(dir.Combine("state"), NullLogger.Instance);
        using var shipper = new LogShipper(settings, outbox, checkpoints, new LogCounters(), TimeProvider.System, NullLogger.Instance);

        var offset = 0UL;
        var added = 0;
        while (!shipper.Saturated)
        {
            var message = $"line {added:D6} " + new string('x', 180);
            offset += (ulong)message.Length + 1;
            shipper.Add(new LogEntry { Source = "app", Path = "/var/log/app.log", FileId = "1:2:ab", Offset = offset, Message = message }, CheckpointMark.File("app", "1:2:ab", "/var/log/app.log", (long)offset));
            added++;
            Assert.True(added < 10_000, "the queue never reached its bound");
        }
        Assert.InRange(added * 190, 2 * settings.BatchMaxBytes, 4 * settings.BatchMaxBytes); // about four batches queued (with per-entry overhead), not the whole burst

        var room = shipper.WaitForRoomAsync(CancellationToken.None);
        Assert.False(room.IsCompleted);
        await shipper.FlushAsync(CancellationToken.None);
        await room.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(shipper.Saturated);
        Assert.Equal(added, (await outbox.ReadAvailable()).Sum(r => Batch.Parser.ParseFrom(r.Payload.Span).Logs.Entries.Count));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AnOutboxOverHalfFull_HoldsLogBatchesBack_WhileConnected_ButBuffersAndDropsTheOldest_InAnOutage(bool connected)
    {
        using var dir = new TempDirectory();
        await using var outbox = DurableOutbox.Open(new OutboxOptions { Directory = dir.Combine("outbox"), MaxBytes = 64 * 1024, SegmentBytes = 8 * 1024 }, NullLogger<DurableOutbox>.Instance);
        var earlier = new List<OutboxKey>();
        while (outbox.PendingBytes <= outbox.MaxBytes / 2)
            earlier.Add(await outbox.AppendOk(Payload(earlier.Count, 1000))); // what the coordinator has not acked yet
        var settings = new LogSettings { BatchMaxBytes = 4 * 1024 };
        var checkpoints = LogCheckpoints.Open(dir.Combine("state"), NullLogger.Instance);
        using var shipper = new LogShipper(settings, outbox, checkpoints, new LogCounters(), TimeProvider.System, NullLogger.Instance, () => connected);
        for (var i = 0; i < 200; i++) // ~40 KB of lines: more than the outbox has left
        {
            var message = $"line {i:D6} " + new string('x', 180);
            shipper.Add(new LogEntry { Source = "app", Path = "/var/log/app.log", FileId = "1:2:ab", Offset = (ulong)(i + 1) * 200, Message = message }, CheckpointMark.File("app", "1:2:ab", "/var/log/app.log", (i + 1) * 200L));
        }

        var earlierKeys = earlier.ToHashSet();
        int Entries(IEnumerable<OutboxRecord> records) =>
            records.Where(r => !earlierKeys.Contains(r.Key)).Sum(r => Batch.Parser.ParseFrom(r.Payload.Span).Logs.Entries.Count);
        var flush = shipper.FlushAsync(CancellationToken.None);
        var shipped = 0;
        if (connected)
        {
            Assert.False(flush.IsCompleted); // the slow coordinator's acks are awaited ...
            // ... so play the coordinator: store and ack whatever is readable until the flush has written everything.
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            while (!flush.IsCompleted && !deadline.IsCancellationRequested)
            {
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token);
                wait.CancelAfter(TimeSpan.FromMilliseconds(200)); // nothing readable yet: look at the flush again
                OutboxRecord record;
                try { record = await outbox.ReadNextAsync(wait.Token); }
                catch (OperationCanceledException) { continue; }
                shipped += Entries([record]);
                outbox.Acknowledge(record.Key);
            }
            await flush.WaitAsync(deadline.Token);
            Assert.Equal(0, outbox.DroppedRecords);
        }
        else
        {
            await flush.WaitAsync(TimeSpan.FromSeconds(30)); // an outage: buffer up to the bound, then drop the oldest
            Assert.True(outbox.DroppedRecords > 0);
            Assert.True(outbox.PendingBytes <= outbox.MaxBytes);
        }
        shipped += Entries(await outbox.ReadAvailable());
        if (connected) Assert.Equal(200, shipped); // nothing lost while the coordinator was merely slow
        else Assert.InRange(shipped, 1, 200);      // what fits is kept; the oldest records made room, counted in DroppedRecords
    }
}
