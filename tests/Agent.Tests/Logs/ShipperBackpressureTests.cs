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
}
