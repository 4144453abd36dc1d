using System.IO.Compression;
using System.Net;
using System.Text.Json;
using Fleet.Coordinator.Blobs;
using Fleet.Coordinator.Logs;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Coordinator.Tests.Logs;

public sealed class LogsTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    public static TheoryData<Store> Stores => new() { Store.Sqlite, Store.Postgres };

    CoordinatorFactory Coordinator(Store store, bool redis = false) =>
        new(store, store == Store.Postgres ? postgres.ConnectionString : null, redis);

    static string NewAgentId() => "agent-" + Guid.NewGuid().ToString("N")[..10];

    static long Ms(DateTimeOffset time) => time.ToUnixTimeMilliseconds();

    static LogEntry FileEntry(string message, ulong offset, DateTimeOffset time, string severity = "info", string path = "/var/log/app/error.log",
        string source = "app-errors", string fileId = "803:1234:ab12cd") =>
        new() { Source = source, Path = path, FileId = fileId, Offset = offset, TimeUnixMs = Ms(time), Severity = severity, Message = message };

    static LogEntry JournalEntry(string message, string cursor, DateTimeOffset time, string severity = "info") =>
        new() { Source = "sshd", Path = "journal:ssh.service", Cursor = cursor, TimeUnixMs = Ms(time), Severity = severity, Message = message };

    static Batch LogsBatch(ulong counter, params LogEntry[] entries) =>
        new() { Key = new BatchKey { Epoch = 42, Counter = counter }, Logs = new LogBatch { Entries = { entries } } };

    static async Task<CoordinatorMessage> SendAsync(RawAgentStream stream, Batch batch)
    {
        await stream.SendAsync(new AgentMessage { Batch = batch });
        return await stream.ReceiveAsync();
    }

    static async Task AckedAsync(RawAgentStream stream, Batch batch)
    {
        var reply = await SendAsync(stream, batch);
        Assert.True(reply.BodyCase == CoordinatorMessage.BodyOneofCase.Ack, reply.ToString());
    }

    static async Task<List<LogEntryRecord>> RowsAsync(CoordinatorFactory coordinator, string agentId)
    {
        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        return await db.Set<LogEntryRecord>().AsNoTracking().Where(e => e.AgentId == agentId).OrderBy(e => e.Id).ToListAsync();
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Entries_AreStoredOnce_WhenResentInANewBatch_AndJournalEntriesByCursor(Store store)
    {
        using var coordinator = Coordinator(store);
        var id = NewAgentId();
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id, "web-1"));
        var now = DateTimeOffset.UtcNow;
        LogEntry[] first = [FileEntry("ERROR one", 0, now, "error"), FileEntry("INFO two", 10, now), JournalEntry("Accepted key", "s=1;i=1", now)];

        await AckedAsync(stream, LogsBatch(1, first));
        // After an agent restart the checkpoint was not yet advanced: the same entries come again in a new batch, with one new.
        await AckedAsync(stream, LogsBatch(2, [.. first.Select(e => e.Clone()), FileEntry("INFO three", 20, now), JournalEntry("Accepted key", "s=1;i=2", now)]));
        // A redelivery of the very same batch is a duplicate batch.
        await AckedAsync(stream, LogsBatch(2, FileEntry("INFO three", 20, now)));

        var rows = await RowsAsync(coordinator, id);
        Assert.Equal(["ERROR one", "INFO two", "Accepted key", "INFO three", "Accepted key"], rows.Select(r => r.Message));
        Assert.Equal([0L, 10L, null, 20L, null], rows.Select(r => r.Offset));
        Assert.Equal(LogSeverity.Error, rows[0].Severity);

        var found = await new Protocol.V1.Logs.LogsClient(coordinator.Channel()).SearchLogsAsync(new SearchLogsRequest { Host = id, OldestFirst = true });
        Assert.Equal(["ERROR one", "INFO two", "Accepted key", "INFO three", "Accepted key"], found.Entries.Select(e => e.Message));
        Assert.All(found.Entries, e => Assert.Equal("web-1", e.Hostname));
        Assert.Equal("error", found.Entries[0].Severity);
    }

    [Fact]
    public async Task Postgres_DirectCopy_StoresOnce_WhenAnEntryIsTwiceInAGroup_OrAnotherWriterStoresItMeanwhile()
    {
        using var coordinator = Coordinator(Store.Postgres);
        var dbFactory = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>();
        var handler = coordinator.Services.GetServices<Fleet.Coordinator.Agents.IBatchPayloadHandler>().OfType<LogsIngestHandler>().Single();
        var ingest = coordinator.Services.GetRequiredService<Fleet.Coordinator.Agents.BatchIngest>();
        var id = NewAgentId();
        var now = DateTimeOffset.UtcNow;

        // The same entry in two batches of one group (a batch re-read after a restart next to its first delivery): stored once.
        await using (var db = dbFactory.CreateDbContext())
        {
            await using var tx = await db.Database.BeginTransactionAsync();
            await handler.AddGroupAsync(db, [(id, LogsBatch(1, FileEntry("one", 0, now), FileEntry("two", 10, now))),
                (id, LogsBatch(2, FileEntry("two", 10, now), FileEntry("three", 20, now)))], CancellationToken.None);
            await tx.CommitAsync();
        }
        Assert.Equal(["one", "two", "three"], (await RowsAsync(coordinator, id)).Select(r => r.Message));

        // Another writer stores "four" between the group's look-up (it sees nothing yet) and its COPY: the COPY waits for
        // that writer, fails on the unique index when it commits, and the batch is stored again one by one, "four" once.
        await using var other = dbFactory.CreateDbContext();
        var otherTx = await other.Database.BeginTransactionAsync();
        await handler.AddGroupAsync(other, [(id, LogsBatch(3, FileEntry("four", 30, now)))], CancellationToken.None);
        var store = ingest.StoreAsync(id, LogsBatch(4, FileEntry("four", 30, now), FileEntry("five", 40, now)), CancellationToken.None);
        await Eventually.UntilAsync(async () =>
        {
            await using var probe = dbFactory.CreateDbContext();
            return await probe.Database.SqlQueryRaw<int>(
                "SELECT count(*)::int AS \"Value\" FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'COPY log_entries%'").SingleAsync() > 0;
        }, "the group's COPY waiting for the other writer");
        await otherTx.CommitAsync();
        await otherTx.DisposeAsync();
        Assert.Equal(Fleet.Coordinator.Agents.IngestOutcome.Stored, (await store.DefaultTimeout()).Outcome);

        var rows = await RowsAsync(coordinator, id);
        Assert.Equal(["one", "two", "three", "four", "five"], rows.Select(r => r.Message));
        Assert.Equal([0L, 10L, 20L, 30L, 40L], rows.Select(r => r.Offset));
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Search_FiltersByHostSourceSeverityWordsAndTime_AndPages(Store store)
    {
        using var coordinator = Coordinator(store);
        var web = NewAgentId();
        var db = NewAgentId();
        var hostname = "web-" + Guid.NewGuid().ToString("N")[..6];
        var now = DateTimeOffset.UtcNow;
        await using (var stream = RawAgentStream.Open(coordinator.Channel()))
        {
            await stream.HelloAsync(RawAgentStream.Hello(web, hostname));
            await AckedAsync(stream, LogsBatch(1,
                FileEntry("Failed password for root from 10.0.0.1 port 22", 0, now.AddMinutes(-5), "warn", "/var/log/auth.log", "auth", "1:2:aa"),
                FileEntry("password changed for alice; nothing failed", 100, now.AddMinutes(-4), "info", "/var/log/auth.log", "auth", "1:2:aa"),
                FileEntry("ERROR connection refused", 0, now.AddMinutes(-3), "error"),
                FileEntry("DEBUG cache warm", 50, now.AddMinutes(-2), "debug"),
                FileEntry("ERROR from two days ago", 90, now.AddDays(-2), "error")));
        }
        await using (var stream = RawAgentStream.Open(coordinator.Channel()))
        {
            await stream.HelloAsync(RawAgentStream.Hello(db, "db-1"));
            await AckedAsync(stream, LogsBatch(1, FileEntry("ERROR disk full", 0, now.AddMinutes(-1), "error", "/var/log/postgresql/error.log", "pg")));
        }
        var api = new Protocol.V1.Logs.LogsClient(coordinator.Channel());
        async Task<string[]> Search(SearchLogsRequest request) => (await api.SearchLogsAsync(request)).Entries.Select(e => e.Message).ToArray();
        var both = new[] { web, db };

        Assert.Equal(4, (await Search(new SearchLogsRequest { Host = web })).Length); // default window: the last 24 h
        Assert.Equal(await Search(new SearchLogsRequest { Host = web }), await Search(new SearchLogsRequest { Host = hostname.ToUpperInvariant() }));
        Assert.Equal(["ERROR disk full", "ERROR connection refused"], (await Search(new SearchLogsRequest { Source = "error.log", Severity = "error" })).Where(m => m.StartsWith("ERROR", StringComparison.Ordinal) && (m.Contains("disk") || m.Contains("refused"))));
        Assert.Equal(["ERROR connection refused"], await Search(new SearchLogsRequest { Host = web, Source = "app-errors", Severity = "error" }));
        Assert.Equal(["ERROR connection refused", "Failed password for root from 10.0.0.1 port 22"], await Search(new SearchLogsRequest { Host = web, Severity = "warn" }));
        Assert.Equal(["Failed password for root from 10.0.0.1 port 22"], await Search(new SearchLogsRequest { Host = web, Q = "\"Failed password\"" }));
        Assert.Equal(["password changed for alice; nothing failed", "Failed password for root from 10.0.0.1 port 22"], await Search(new SearchLogsRequest { Host = web, Q = "password" }));
        Assert.Equal(["ERROR from two days ago"], await Search(new SearchLogsRequest { Host = web, From = Timestamp.FromDateTimeOffset(now.AddDays(-3)), To = Timestamp.FromDateTimeOffset(now.AddDays(-1)) }));

        // Limit and keyset paging, newest first, over everything of both hosts in the last 3 days.
        var pages = new List<string>();
        var request = new SearchLogsRequest { From = Timestamp.FromDateTimeOffset(now.AddDays(-3)), Limit = 2 };
        var count = 0;
        do
        {
            var response = await api.SearchLogsAsync(request);
            Assert.True(response.Entries.Count <= 2);
            pages.AddRange(response.Entries.Where(e => both.Contains(e.AgentId)).Select(e => e.Message));
            request.PageToken = response.NextPageToken;
            Assert.True(++count < 1000, "paging does not end");
        }
        while (request.PageToken.Length > 0);
        Assert.Equal(
            ["ERROR disk full", "DEBUG cache warm", "ERROR connection refused", "password changed for alice; nothing failed", "Failed password for root from 10.0.0.1 port 22", "ERROR from two days ago"],
            pages);
    }

    /// <summary>
    /// PostgreSQL searches with words in two ways (LogsApi.FewMatchesAsync): words with at most
    /// Fleet:Logs:SearchCandidates matches (here 3) take the page from the text index's matches; more, and the search
    /// walks the time index. Both must give the same rows in the same order, with the same paging, both directions.
    /// </summary>
    [Fact]
    public async Task Postgres_Search_RareAndCommonWords_GiveTheSameRowsAndPages_AsTheOrderedQuery()
    {
        using var coordinator = Coordinator(Store.Postgres).With("Fleet:Logs:SearchCandidates", "3");
        var web = NewAgentId();
        var db = NewAgentId();
        var now = DateTimeOffset.UtcNow;
        await using (var stream = RawAgentStream.Open(coordinator.Channel()))
        {
            await stream.HelloAsync(RawAgentStream.Hello(web, "web-1"));
            await AckedAsync(stream, LogsBatch(1,
                FileEntry("GET /orders req=7f3a9c01 status=200 user=alice", 0, now.AddMinutes(-9)),
                FileEntry("ERROR timeout req=7f3a9c02 user=bob", 100, now.AddMinutes(-8), "error"),
                FileEntry("GET /orders req=7f3a9c03 status=500 user=alice", 200, now.AddMinutes(-7)),
                FileEntry("ERROR timeout req=7f3a9c04 user=carol", 300, now.AddMinutes(-6), "error"),
                FileEntry("GET /cart req=7f3a9c05 status=200 user=alice", 400, now.AddMinutes(-4)),
                FileEntry("old GET /orders req=7f3a9c00 user=alice", 500, now.AddDays(-3))));
        }
        await using (var stream = RawAgentStream.Open(coordinator.Channel()))
        {
            await stream.HelloAsync(RawAgentStream.Hello(db, "db-1"));
            // Same time as a web entry: the id breaks the tie.
            await AckedAsync(stream, LogsBatch(1,
                FileEntry("ERROR timeout req=7f3a9c06 user=alice", 0, now.AddMinutes(-6), "error", "/var/log/postgresql/error.log", "pg"),
                FileEntry("GET /orders req=7f3a9c07 status=200 user=dave", 100, now.AddMinutes(-5), "info", "/var/log/postgresql/error.log", "pg")));
        }
        var api = new Protocol.V1.Logs.LogsClient(coordinator.Channel());
        var mine = new[] { web, db };

        async Task<List<string>> AllPages(string q, bool oldestFirst, int limit, string host = "")
        {
            var request = new SearchLogsRequest { Q = q, OldestFirst = oldestFirst, Limit = limit, Host = host, From = Timestamp.FromDateTimeOffset(now.AddHours(-1)) };
            var messages = new List<string>();
            for (var pages = 0; ; pages++)
            {
                Assert.True(pages < 100, "paging does not end");
                var response = await api.SearchLogsAsync(request);
                Assert.True(response.Entries.Count <= limit);
                messages.AddRange(response.Entries.Where(e => mine.Contains(e.AgentId)).Select(e => e.Message));
                if (response.NextPageToken.Length == 0) return messages;
                request.PageToken = response.NextPageToken;
            }
        }

        // Rare: an id (1 match), "timeout" (3 matches, = the cap). Common: "alice" (4 in the window), "get" (4).
        string[] timeouts = ["ERROR timeout req=7f3a9c06 user=alice", "ERROR timeout req=7f3a9c04 user=carol", "ERROR timeout req=7f3a9c02 user=bob"];
        string[] alice = ["GET /cart req=7f3a9c05 status=200 user=alice", "ERROR timeout req=7f3a9c06 user=alice",
            "GET /orders req=7f3a9c03 status=500 user=alice", "GET /orders req=7f3a9c01 status=200 user=alice"];
        string[] gets = ["GET /cart req=7f3a9c05 status=200 user=alice", "GET /orders req=7f3a9c07 status=200 user=dave",
            "GET /orders req=7f3a9c03 status=500 user=alice", "GET /orders req=7f3a9c01 status=200 user=alice"];
        // Without statistics (nothing is known to be common), then after ANALYZE (words of this small table such as
        // "get" and "alice" are in the most-common list and skip the first step).
        await ExpectedPagesAsync();
        await using (var context = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext())
            await context.Database.ExecuteSqlRawAsync("ANALYZE log_entries");
        await ExpectedPagesAsync();

        async Task ExpectedPagesAsync()
        {
            foreach (var limit in new[] { 1, 2, 100 })
            {
                Assert.Equal(["ERROR timeout req=7f3a9c04 user=carol"], await AllPages("7f3a9c04", false, limit));
                Assert.Equal(timeouts, await AllPages("timeout", false, limit));
                Assert.Equal(timeouts.Reverse(), await AllPages("timeout", true, limit));
                Assert.Equal(alice, await AllPages("alice", false, limit));
                Assert.Equal(alice.Reverse(), await AllPages("alice", true, limit));
                Assert.Equal(gets, await AllPages("get", false, limit));
                Assert.Equal(["GET /cart req=7f3a9c05 status=200 user=alice", "GET /orders req=7f3a9c03 status=500 user=alice", "GET /orders req=7f3a9c01 status=200 user=alice"],
                    await AllPages("status alice", false, limit));
                Assert.Equal(["GET /orders req=7f3a9c03 status=500 user=alice"], await AllPages("alice -200 -timeout", false, limit));
                Assert.Equal(["ERROR timeout req=7f3a9c06 user=alice"], await AllPages("alice", false, limit, host: db));
                Assert.Empty(await AllPages("7f3a9c00", false, limit)); // outside the window
            }
        }
    }

    [Fact]
    public async Task BadFields_AreInvalidArgument_NamingTheField_OverGrpcAndRest()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var api = new Protocol.V1.Logs.LogsClient(coordinator.Channel());
        foreach (var (request, field) in new (SearchLogsRequest, string)[]
        {
            (new() { Severity = "loud" }, "severity"),
            (new() { Limit = 5001 }, "limit"),
            (new() { Limit = -1 }, "limit"),
            (new() { PageToken = "not-a-token" }, "page_token"),
            (new() { From = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow), To = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow.AddHours(-1)) }, "from"),
            (new() { Q = new string('x', 1001) }, "q"),
        })
        {
            var error = await Assert.ThrowsAsync<RpcException>(() => api.SearchLogsAsync(request).ResponseAsync);
            Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
            Assert.StartsWith(field + ":", error.Status.Detail);
        }

        using var http = coordinator.CreateClient();
        var rest = await http.GetAsync("/api/v1/logs?severity=loud");
        Assert.Equal(HttpStatusCode.BadRequest, rest.StatusCode);
        Assert.Contains("severity", await rest.Content.ReadAsStringAsync());
        var ok = await http.GetAsync("/api/v1/logs?severity=error&limit=10&q=Failed%20password");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task LongMessage_IsClipped_NotRejected_ButAnEntryWithoutIdentityRejectsTheBatch()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var id = NewAgentId();
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));
        var now = DateTimeOffset.UtcNow;
        await AckedAsync(stream, LogsBatch(1, FileEntry(new string('x', 200_000), 0, now), FileEntry("short", 200_001, now)));

        var rows = await RowsAsync(coordinator, id);
        Assert.Equal(2, rows.Count);
        Assert.Equal(LogEntryRecord.MaxMessage, rows[0].Message.Length);
        Assert.Contains("200000", rows[0].FieldsJson);

        var reply = await SendAsync(stream, LogsBatch(2, FileEntry("fine", 300_000, now), new LogEntry { Source = "x", Message = "no identity", TimeUnixMs = Ms(now) }));
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Reject, reply.BodyCase);
        Assert.Contains("logs.entries.file_id", reply.Reject.Reason);
        Assert.Equal(2, (await RowsAsync(coordinator, id)).Count);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Follow_ReceivesMatchingEntriesStoredAfterItStarted(Store store)
    {
        using var coordinator = Coordinator(store, redis: store == Store.Postgres);
        var id = NewAgentId();
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id, "web-follow"));
        var now = DateTimeOffset.UtcNow;
        await AckedAsync(stream, LogsBatch(1, FileEntry("ERROR before the follow", 0, now, "error")));

        using var cts = new CancellationTokenSource(Eventually.Deadline);
        using var follow = new Protocol.V1.Logs.LogsClient(coordinator.Channel())
            .FollowLogs(new FollowLogsRequest { Host = id, Severity = "error" }, cancellationToken: cts.Token);
        await follow.ResponseHeadersAsync.DefaultTimeout();
        await AckedAsync(stream, LogsBatch(2, FileEntry("INFO not an error", 10, now), FileEntry("ERROR after the follow", 20, now, "error")));
        // Re-sent entries are not stored again, so followers do not see them twice.
        await AckedAsync(stream, LogsBatch(3, FileEntry("ERROR after the follow", 20, now, "error"), FileEntry("ERROR last", 30, now, "error")));

        var received = new List<LogRecord>();
        while (received.Count < 2 && await follow.ResponseStream.MoveNext(cts.Token).DefaultTimeout())
            received.Add(follow.ResponseStream.Current);
        Assert.Equal(["ERROR after the follow", "ERROR last"], received.Select(r => r.Message));
        Assert.All(received, r => Assert.Equal("web-follow", r.Hostname));
        Assert.True(received[0].Id > 0);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Retention_ArchivesEachOldDay_ThenDeletesOnlyOldRows(Store store)
    {
        using var coordinator = Coordinator(store).With("Fleet:Logs:Archive", "true").With("Fleet:Logs:Retention", "30.00:00:00");
        var id = NewAgentId();
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));
        var now = DateTimeOffset.UtcNow;
        var oldDay = new DateTimeOffset(now.UtcDateTime.Date.AddDays(-40), TimeSpan.Zero);
        await AckedAsync(stream, LogsBatch(1,
            FileEntry("old one", 0, oldDay.AddHours(1), "error"),
            JournalEntry("old two", "c=1", oldDay.AddHours(23)),
            FileEntry("recent", 10, now)));
        var oldRows = (await RowsAsync(coordinator, id)).Where(r => r.Message.StartsWith("old", StringComparison.Ordinal)).ToList();

        await coordinator.Services.GetRequiredService<LogsRetention>().RunOnceAsync(CancellationToken.None);

        Assert.Equal(["recent"], (await RowsAsync(coordinator, id)).Select(r => r.Message));
        var blobs = coordinator.Services.GetRequiredService<IBlobStore>();
        var prefix = $"logs/{oldDay:yyyy}/{oldDay:MM}/{oldDay:dd}/";
        var archived = new List<JsonElement>();
        await foreach (var blob in blobs.ListAsync(prefix, CancellationToken.None))
        {
            Assert.Matches(@"/part-\d+\.jsonl\.gz$", blob.Key);
            await using var content = (await blobs.OpenReadAsync(blob.Key, CancellationToken.None))!;
            using var reader = new StreamReader(new GZipStream(content, CompressionMode.Decompress));
            while (await reader.ReadLineAsync() is { } line)
                archived.Add(JsonDocument.Parse(line).RootElement.Clone());
        }
        var mine = archived.Where(a => a.GetProperty("agentId").GetString() == id).ToList();
        Assert.Equal(oldRows.Select(r => r.Id), mine.Select(a => a.GetProperty("id").GetInt64()));
        Assert.Equal(oldRows.Select(r => r.Message), mine.Select(a => a.GetProperty("message").GetString()));
        Assert.Equal(["error", "info"], mine.Select(a => a.GetProperty("severity").GetString()));
        Assert.Equal("c=1", mine[1].GetProperty("cursor").GetString());
    }
}
