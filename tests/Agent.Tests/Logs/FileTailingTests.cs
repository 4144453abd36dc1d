using Fleet.Agent.Logs;
using Fleet.Protocol.V1;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Logs;

public sealed class FileTailingTests
{
    static string[] Numbered(string prefix, int from, int to) =>
        [.. Enumerable.Range(from, to - from + 1).Select(i => $"{prefix} line {i:D4} " + new string('x', 40))];

    [Fact]
    public async Task NewFileMatchingTheGlob_IsPickedUp_FromTheBeginning()
    {
        await using var h = new LogHarness();
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();

        LogHarness.Append(h.Log("other.txt"), "not matched");
        LogHarness.Append(h.Log("new.log"), "hello from a new file", "second line");

        var shipped = await h.ShippedAsync("hello from a new file", "second line");
        var first = shipped.Single(e => e.Message == "hello from a new file");
        Assert.Equal(0UL, first.Offset);
        Assert.Equal(h.Log("new.log"), first.Path);
        Assert.Equal("app", first.Source);
        Assert.Matches("^[0-9a-f]+:[0-9a-f]+:[0-9a-f]{16}$", first.FileId);
        Assert.Equal((ulong)"hello from a new file\n".Length, shipped.Single(e => e.Message == "second line").Offset);
        Assert.DoesNotContain(shipped, e => e.Message == "not matched");
    }

    [Fact]
    public async Task ExistingFileAtFirstStart_IsReadFromItsEnd()
    {
        await using var h = new LogHarness();
        LogHarness.Append(h.Log("old.log"), "history before the agent");
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        LogHarness.Append(h.Log("old.log"), "after start");

        var shipped = await h.ShippedAsync("after start");
        Assert.DoesNotContain(shipped, e => e.Message == "history before the agent");
        Assert.Equal((ulong)"history before the agent\n".Length, shipped.Single().Offset);
    }

    [Fact]
    public async Task RotationByRename_LosesAndDuplicatesNothing()
    {
        await using var h = new LogHarness();
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        var path = h.Log("app.log");
        var old = Numbered("old", 1, 100);
        var fresh = Numbered("new", 1, 100);

        using (var writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete)))
        {
            foreach (var line in old.Take(50)) writer.WriteLine(line);
            writer.Flush();
            await h.ShippedUntilAsync(s => s.Count >= 1, what: "the first lines");
            foreach (var line in old.Skip(50)) writer.WriteLine(line); // just before the rename
            writer.Flush();
            File.Move(path, h.Log("app.log.1"));
            LogHarness.Append(path, fresh); // the application reopens its log
        }

        var shipped = await h.ShippedUntilAsync(s => s.Count >= 200, what: "all 200 lines");
        Assert.Equal([.. old, .. fresh], shipped.Select(e => e.Message).ToArray());
        Assert.Single(shipped.Take(100).Select(e => e.FileId).Distinct());
        Assert.Single(shipped.Skip(100).Select(e => e.FileId).Distinct());
        Assert.NotEqual(shipped[0].FileId, shipped[100].FileId);
        Assert.Equal(0UL, shipped[100].Offset);
        Assert.Equal(200, shipped.Select(e => (e.FileId, e.Offset)).Distinct().Count());
        await Eventually.UntilAsync(() => h.Counters.FilesOpen == 1, "the renamed file closed once drained");
        Assert.True(h.Counters.Rotations >= 1);
    }

    [Fact]
    public async Task CopyTruncate_RestartsAtZero_UnderANewIdentity()
    {
        await using var h = new LogHarness();
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        var path = h.Log("app.log");
        LogHarness.Append(path, Numbered("before", 1, 5));
        var before = await h.ShippedUntilAsync(s => s.Count >= 5);

        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            stream.SetLength(0);
        LogHarness.Append(path, "after truncation");

        var after = (await h.ShippedAsync("after truncation")).Single(e => e.Message == "after truncation");
        Assert.Equal(0UL, after.Offset);
        Assert.NotEqual(before[0].FileId, after.FileId);
        Assert.Equal(1, h.Counters.Truncations);
    }

    [Fact]
    public async Task CopyTruncate_WithTheSameFirstLine_IsANewGeneration_AndKeepsItAcrossARestart()
    {
        await using var h = new LogHarness();
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        var path = h.Log("app.log");
        LogHarness.Append(path, "# app log", "first a", "first b");
        var before = (await h.ShippedAsync("first b")).Single(e => e.Message == "first a");

        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            stream.SetLength(0);
        LogHarness.Append(path, "# app log", "second a");

        var shipped = await h.ShippedAsync("second a");
        var header = shipped.Last(e => e.Message == "# app log");
        Assert.Equal(0UL, header.Offset);
        Assert.Equal(before.FileId + ":g1", header.FileId); // same first line, but never taken for the old offsets
        var secondA = shipped.Single(e => e.Message == "second a");
        Assert.Equal(before.Offset, secondA.Offset); // the very offset "first a" had: only the generation tells them apart

        await h.StopAsync();
        LogHarness.Append(path, "second b");
        await h.StartAsync();
        var afterRestart = (await h.ShippedAsync("second b")).Single(e => e.Message == "second b");
        Assert.Equal(header.FileId, afterRestart.FileId);
        Assert.Single(h.Shipped, e => e.Message == "second a"); // resumed from the checkpoint, not re-read
    }

    [Fact]
    public async Task InodeReuse_DeleteAndCreate_IsANewFileReadFromZero()
    {
        await using var h = new LogHarness();
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        var path = h.Log("app.log");
        LogHarness.Append(path, "first file, first line", "first file, second line");
        var first = (await h.ShippedAsync("first file, second line"))[0];
        await h.StopAsync();

        File.Delete(path);
        LogHarness.Append(path, "second file"); // very likely the same inode
        await h.StartAsync();

        var second = (await h.ShippedAsync("second file")).Single(e => e.Message == "second file");
        Assert.Equal(0UL, second.Offset);
        Assert.NotEqual(first.FileId, second.FileId);
        var sameInode = first.FileId[..first.FileId.LastIndexOf(':')] == second.FileId[..second.FileId.LastIndexOf(':')];
        Assert.Equal(sameInode ? 1 : 0, h.Counters.CheckpointsDiscarded);
    }

    [Fact]
    public async Task CheckpointWithAnotherFingerprint_IsDiscarded()
    {
        await using var h = new LogHarness();
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        var path = h.Log("app.log");
        LogHarness.Append(path, "original header", "original body");
        await h.ShippedAsync("original body");
        await h.StopAsync();

        // Rewritten in place while the agent was down: same inode, other first line, longer than the checkpoint.
        File.WriteAllText(path, "replaced header with more text\nreplaced body with even more text\n");
        await h.StartAsync();

        var shipped = await h.ShippedAsync("replaced header with more text", "replaced body with even more text");
        Assert.Equal(0UL, shipped.Single(e => e.Message == "replaced header with more text").Offset);
        Assert.Equal(1, h.Counters.CheckpointsDiscarded);
    }

    [Fact]
    public async Task CheckpointPastTheEnd_IsDiscarded()
    {
        await using var h = new LogHarness();
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        var path = h.Log("app.log");
        LogHarness.Append(path, "same first line", "a long second line that makes the checkpoint far out", "third");
        await h.ShippedAsync("third");
        await h.StopAsync();

        File.WriteAllText(path, "same first line\n"); // same identity, shorter than the checkpoint
        await h.StartAsync();

        var shipped = await h.ShippedUntilAsync(s => s.Count(e => e.Message == "same first line") == 2, what: "the first line again");
        Assert.Equal(0UL, shipped.Last().Offset);
        Assert.Equal(1, h.Counters.CheckpointsDiscarded);
    }

    [Fact]
    public async Task Restart_WithoutAcks_ReReadsTheSameEntries_WithAcks_DoesNot()
    {
        await using var h = new LogHarness();
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        var path = h.Log("app.log");
        LogHarness.Append(path, "one", "two", "three");
        var unacked = (await h.ShippedUntilAsync(s => s.Count >= 3, ack: false)).Select(e => (e.FileId, e.Offset, e.Message)).ToList();
        await h.StopAsync();

        h.Shipped.Clear();
        await h.StartAsync();
        var again = (await h.ShippedUntilAsync(s => s.Count >= 3, ack: true)).Select(e => (e.FileId, e.Offset, e.Message)).ToList();
        Assert.Equal(unacked, again);
        await h.StopAsync();

        h.Shipped.Clear();
        await h.StartAsync();
        LogHarness.Append(path, "four");
        var after = await h.ShippedAsync("four");
        Assert.Equal(["four"], after.Select(e => e.Message).ToArray());
        Assert.Equal((ulong)"one\ntwo\nthree\n".Length, after[0].Offset);
    }

    [Fact]
    public async Task PartialLastLine_WaitsForItsEnd_ThenIsShippedWhole()
    {
        await using var h = new LogHarness();
        h.Options.Logs.PartialLineTimeout = TimeSpan.FromSeconds(30);
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        var path = h.Log("app.log");
        File.AppendAllText(path, "complete\nhalf of a ");
        await h.ShippedAsync("complete");
        File.AppendAllText(path, "line\n");

        var shipped = await h.ShippedAsync("half of a line");
        Assert.Equal(["complete", "half of a line"], shipped.Select(e => e.Message).ToArray());
    }

    [Fact]
    public async Task LongLine_IsSplitIntoBoundedPieces()
    {
        await using var h = new LogHarness();
        h.Options.Logs.MaxLineBytes = 1000;
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        LogHarness.Append(h.Log("app.log"), new string('a', 2500), "next");

        var shipped = await h.ShippedAsync("next");
        Assert.Equal([1000, 1000, 500, 4], shipped.Select(e => e.Message.Length).ToArray());
        Assert.Equal([0UL, 1000UL, 2000UL, 2501UL], shipped.Select(e => e.Offset).ToArray());
    }

    [Fact]
    public async Task CopyTruncate_LinesNotReadBeforeTheTruncation_AreReadFromTheCopy_UnderTheOldIdentity()
    {
        // Bug: the lines written after the last read and before copytruncate's truncation were only in the copy
        // (app.log.1, not matched by the glob) and were lost.
        await using var h = new LogHarness();
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        var path = h.Log("app.log");
        LogHarness.Append(path, Numbered("old", 1, 5));
        var before = await h.ShippedUntilAsync(s => s.Count >= 5);
        var fileId = before[0].FileId;
        var fifthLineEnd = before[4].Offset + (ulong)Numbered("old", 5, 5)[0].Length + 1;
        await h.StopAsync();

        LogHarness.Append(path, Numbered("old", 6, 10)); // not read before the rotation
        File.Copy(path, path + ".1");
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            stream.SetLength(0);
        LogHarness.Append(path, "after truncation");
        h.Shipped.Clear();
        await h.StartAsync();

        var shipped = await h.ShippedUntilAsync(s => s.Any(e => e.Message == "after truncation") && s.Count(e => e.Message.StartsWith("old", StringComparison.Ordinal)) >= 5);
        var rest = shipped.Where(e => e.Message.StartsWith("old", StringComparison.Ordinal)).ToList();
        Assert.Equal(Numbered("old", 6, 10), rest.Select(e => e.Message).ToArray());
        Assert.All(rest, e => Assert.Equal(fileId, e.FileId));
        Assert.Equal(fifthLineEnd, rest[0].Offset);
        Assert.Equal(0UL, shipped.Single(e => e.Message == "after truncation").Offset);
    }
}
