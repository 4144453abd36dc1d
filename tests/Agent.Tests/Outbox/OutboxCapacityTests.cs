using System.Diagnostics;
using Fleet.Agent.Outbox;
using Fleet.Testing;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;
using static Fleet.Agent.Tests.Outbox.OutboxTestSupport;

namespace Fleet.Agent.Tests.Outbox;

/// <summary>The disk bound, oversized records and a full disk.</summary>
public class OutboxCapacityTests(ITestOutputHelper output)
{
    [Fact]
    public async Task MaxBytes_bound_drops_the_oldest_records_and_counts_them()
    {
        using var dir = new TempDirectory();
        var logger = new ListLogger<DurableOutbox>();
        const long maxBytes = 8 * 1024;
        await using var outbox = Open(dir.Path, maxBytes: maxBytes, segmentBytes: 1024, logger: logger);

        var keys = new List<OutboxKey>();
        for (var i = 0; i < 200; i++)
        {
            keys.Add(await outbox.AppendOk(Payload(i, 100))); // 128 bytes framed, 25.6 KB in all
            Assert.True(outbox.DiskBytes <= maxBytes);
            Assert.True(SegmentBytesOnDisk(dir.Path) <= maxBytes, $"after {i + 1} appends: {SegmentBytesOnDisk(dir.Path)} bytes on disk");
        }

        Assert.True(outbox.DroppedRecords > 0);
        Assert.Equal(200, outbox.DroppedRecords + outbox.PendingRecords);
        Assert.True(outbox.PendingRecords >= 7 * 8, $"only {outbox.PendingRecords} records kept"); // at most one segment's worth below the bound
        Assert.True(logger.Has(LogLevel.Warning, "dropped the oldest segment"));

        // What is left is the newest records, contiguous, in order.
        var records = await outbox.ReadAvailable();
        Assert.Equal(outbox.PendingRecords, records.Count);
        Assert.Equal(keys.Skip(200 - records.Count), records.Select(r => r.Key));
        Assert.Equal(Payload(199, 100), records[^1].Payload.ToArray());
    }

    [Fact]
    public async Task Records_dropped_for_the_bound_are_announced_once_each_and_acknowledged_ones_are_not()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path, maxBytes: 4 * 1024, segmentBytes: 1024);
        var discarded = new List<OutboxKey>();
        outbox.Discarded += key => { lock (discarded) discarded.Add(key); };

        var keys = new List<OutboxKey>();
        for (var i = 0; i < 100; i++)
        {
            var key = await outbox.AppendOk(Payload(i, 100));
            keys.Add(key);
            if (i % 10 == 0) outbox.Acknowledge(key); // stored by the coordinator: never announced as lost
        }

        Assert.Equal(outbox.DroppedRecords, discarded.Count);
        Assert.True(discarded.Count > 0);
        Assert.Equal(discarded.Count, discarded.Distinct().Count());
        Assert.DoesNotContain(discarded, k => keys.IndexOf(k) % 10 == 0);
        var left = (await outbox.ReadAvailable()).Select(r => r.Key).ToHashSet();
        Assert.DoesNotContain(discarded, left.Contains);
        Assert.Equal(keys.Where((k, i) => i % 10 != 0), keys.Where((k, i) => i % 10 != 0).Where(k => discarded.Contains(k) || left.Contains(k)));
    }

    [Fact]
    public async Task Dropping_the_segment_being_read_moves_the_reader_on_to_what_is_left()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path, maxBytes: 2048, segmentBytes: 256);
        var keys = new List<OutboxKey>();
        for (var i = 0; i < 4; i++) keys.Add(await outbox.AppendOk(Payload(i, 100)));
        Assert.Equal(keys[0], (await outbox.Next()).Key); // handed out, not acknowledged

        for (var i = 4; i < 40; i++) keys.Add(await outbox.AppendOk(Payload(i, 100)));

        var records = await outbox.ReadAvailable();
        Assert.NotEmpty(records);
        Assert.Equal(keys[^1], records[^1].Key);
        Assert.Equal(keys.Skip(40 - records.Count), records.Select(r => r.Key));
        outbox.Acknowledge(keys[0]); // long gone: ignored
        Assert.Equal(40, outbox.DroppedRecords + outbox.PendingRecords);
    }

    [Fact]
    public async Task A_record_larger_than_MaxBytes_is_dropped_with_a_reason()
    {
        using var dir = new TempDirectory();
        await using var outbox = Open(dir.Path, maxBytes: 4096, segmentBytes: 1024);
        var before = await outbox.AppendOk(Payload("small"));

        var result = await outbox.AppendAsync(new byte[5000], CancellationToken.None);
        Assert.Equal(AppendStatus.Dropped, result.Status);
        Assert.Contains("exceeds", result.Reason);
        Assert.Equal(1, outbox.DroppedRecords);

        // Just below the bound is fine (it evicts everything else), and the outbox carries on.
        var big = await outbox.AppendOk(new byte[4096 - 28]);
        Assert.Equal(before.Counter + 1, big.Counter);
        var after = await outbox.AppendOk(Payload("small again"));
        var records = await outbox.ReadAvailable();
        Assert.Equal([after], records.Select(r => r.Key));
        Assert.Equal(3, outbox.DroppedRecords); // the oversized one, "small" and the big one
    }

    [Fact]
    public async Task Disk_full_drops_the_append_and_the_outbox_stays_usable_dev_full()
    {
        // The next segment file is a symlink to /dev/full: opening it works, every write fails with ENOSPC.
        Assert.True(File.Exists("/dev/full"), "this test needs Linux's /dev/full");
        using var dir = new TempDirectory();
        var logger = new ListLogger<DurableOutbox>();
        var outbox = Open(dir.Path, segmentBytes: 1024, logger: logger);
        await using (outbox)
        {
            var first = await outbox.AppendOk(new byte[1000]); // fills segment 1: the next append rolls to segment 2
            Assert.Equal(["00000000000000000001.seg"], SegmentFiles(dir.Path).Select(Path.GetFileName));
            File.CreateSymbolicLink(Path.Combine(dir.Path, "00000000000000000002.seg"), "/dev/full");

            var failed = await outbox.AppendAsync(Payload("lost"), CancellationToken.None);
            Assert.Equal(AppendStatus.Dropped, failed.Status);
            output.WriteLine($"reason: {failed.Reason}");
            Assert.Contains("No space left on device", failed.Reason);
            Assert.Equal(1, outbox.DroppedRecords);
            Assert.True(logger.Has(LogLevel.Warning, "No space left on device"));
            Assert.False(File.Exists(Path.Combine(dir.Path, "00000000000000000002.seg")), "the failed segment should be gone");

            // Still usable: the next append goes to a fresh segment.
            var second = await outbox.AppendOk(Payload("kept"));
            Assert.True(second.Counter > first.Counter);
            var records = await outbox.ReadAvailable();
            Assert.Equal([first, second], records.Select(r => r.Key));
            Assert.Equal(2, outbox.PendingRecords);
        }
        await using var reopened = Open(dir.Path, segmentBytes: 1024);
        Assert.Equal(2, reopened.PendingRecords);
        Assert.Equal(0, reopened.DroppedRecords);
    }

    [Fact]
    public async Task Disk_full_on_a_real_small_filesystem_drops_appends_rolls_back_and_recovers()
    {
        // A real ENOSPC with partial writes: a 256 KiB tmpfs. Needs root (or CAP_SYS_ADMIN), as the tests run here and in CI.
        using var mountPoint = new TempDirectory();
        Assert.True(TryMountTmpfs(mountPoint.Path, "256k"), "mounting a tmpfs needs root (or CAP_SYS_ADMIN); run the tests as root");
        try
        {
            var directory = Path.Combine(mountPoint.Path, "outbox");
            var keys = new List<OutboxKey>();
            AppendResult dropped = default;
            await using (var outbox = Open(directory, maxBytes: 64L * 1024 * 1024, segmentBytes: 32 * 1024))
            {
                var reader = new List<OutboxRecord>();
                for (var i = 0; i < 100; i++)
                {
                    var result = await outbox.AppendAsync(Payload(i, 3000), CancellationToken.None);
                    if (result.Status == AppendStatus.Dropped)
                    {
                        dropped = result;
                        break;
                    }
                    keys.Add(result.Key);
                }
                output.WriteLine($"appended {keys.Count} records before: {dropped.Reason}");
                Assert.Equal(AppendStatus.Dropped, dropped.Status);
                Assert.Contains("No space left on device", dropped.Reason);
                Assert.InRange(keys.Count, 30, 90);

                // Keep failing while full, without corrupting anything.
                for (var i = 0; i < 5; i++)
                    Assert.Equal(AppendStatus.Dropped, (await outbox.AppendAsync(Payload(i, 3000), CancellationToken.None)).Status);
                Assert.Equal(6, outbox.DroppedRecords);

                // Everything appended is intact; the coordinator takes it all and space comes back.
                var records = await outbox.ReadAvailable();
                Assert.Equal(keys, records.Select(r => r.Key));
                for (var i = 0; i < records.Count; i++)
                    Assert.Equal(Payload(i, 3000), records[i].Payload.ToArray());
                foreach (var record in records) outbox.Acknowledge(record.Key);

                var again = await outbox.AppendOk(Payload(1000, 3000));
                Assert.True(again.Counter > keys[^1].Counter);
                keys.Add(again);
                Assert.Equal(again, (await outbox.Next()).Key);
            }
            await using (var reopened = Open(directory, maxBytes: 64L * 1024 * 1024, segmentBytes: 32 * 1024))
            {
                Assert.Equal(0, reopened.DroppedRecords);
                Assert.Equal([keys[^1]], (await reopened.ReadAvailable()).Select(r => r.Key));
            }
        }
        finally
        {
            Run("umount", mountPoint.Path);
        }
    }

    private static bool TryMountTmpfs(string path, string size)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return Run("mount", "-t", "tmpfs", "-o", $"size={size}", "tmpfs", path) == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    private static int Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var process = Process.Start(start)!;
        process.WaitForExit();
        return process.ExitCode;
    }
}
