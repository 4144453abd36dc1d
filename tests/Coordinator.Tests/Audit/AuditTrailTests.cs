using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Api;
using Google.Protobuf.Reflection;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Fleet.Coordinator.Tests.Audit;

public sealed class AuditTrailTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    /// <summary>How the test exercises each mutating ops endpoint: a new mutating endpoint missing here fails the test.</summary>
    static readonly Dictionary<string, Func<CoordinatorFactory, Task<string>>> MutatingCalls = new()
    {
        ["fleet.v1.Agents.RemoveAgent"] = async coordinator =>
        {
            var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
            await using var stream = RawAgentStream.Open(coordinator.Channel());
            await stream.HelloAsync(RawAgentStream.Hello(id));
            await new Protocol.V1.Agents.AgentsClient(coordinator.Channel("alice")).RemoveAgentAsync(new RemoveAgentRequest { Id = id });
            return "agent.removed";
        },
    };

    static IEnumerable<MethodDescriptor> MutatingMethods() =>
        OpsReflection.Descriptor.Services.SelectMany(s => s.Methods).Where(m =>
            m.GetOptions()?.GetExtension(AnnotationsExtensions.Http) is { } rule &&
            rule.PatternCase is HttpRule.PatternOneofCase.Post or HttpRule.PatternOneofCase.Put or HttpRule.PatternOneofCase.Patch or HttpRule.PatternOneofCase.Delete);

    [Fact]
    public async Task EveryMutatingEndpoint_WritesExactlyOneAuditRow_WithItsActor()
    {
        using var coordinator = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString);
        var methods = MutatingMethods().ToList();
        Assert.NotEmpty(methods);
        foreach (var method in methods)
        {
            Assert.True(MutatingCalls.TryGetValue(method.FullName, out var call), $"{method.FullName} changes state but has no audit test: add it to MutatingCalls");
            await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
            var before = await db.Set<AuditRecord>().Select(e => e.Id).ToListAsync();
            var action = await call(coordinator);
            var added = await db.Set<AuditRecord>().Where(e => !before.Contains(e.Id) && e.ActorKind == "user").ToListAsync();
            var row = Assert.Single(added);
            Assert.Equal(action, row.Action);
            Assert.Equal("alice", row.Actor);
            Assert.False(string.IsNullOrEmpty(row.RemoteAddress) && row.ActorKind != "user");
        }
    }

    [Fact]
    public async Task AgentConnectAndDisconnect_AreAudited_AsTheAgent()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite);
        var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
        await using (var stream = RawAgentStream.Open(coordinator.Channel()))
        {
            await stream.HelloAsync(RawAgentStream.Hello(id, "db-7"));
            await stream.CompleteAsync();
            await stream.FinalStatusAsync();
        }
        var audit = new Protocol.V1.Audit.AuditClient(coordinator.Channel());
        var events = await Eventually.UntilAsync(
            async () => (await audit.ListAuditEventsAsync(new ListAuditEventsRequest { Host = id, Action = "agent.*" })).Events,
            e => e.Count == 2, "connect and disconnect events");
        Assert.Equal(["agent.connected", "agent.disconnected"], events.Select(e => e.Action));
        Assert.All(events, e => { Assert.Equal("agent", e.ActorKind); Assert.Equal(id, e.Actor); });
        Assert.Contains("db-7", events[0].ParametersJson);
    }

    [Fact]
    public async Task Secrets_NeverAppearInAnyRow()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite).Fast();
        await AuditHarness.WriteAsync(coordinator, 3, "db.restore", i => new Dictionary<string, string?>
        {
            ["password"] = "hunter2",
            ["apiKey"] = "AKIA-SECRET-1",
            ["command"] = "pg_restore --dbname=postgres://app:s3cr3tpw@db/app PGPASSWORD=topsecret",
            ["header"] = "Authorization: Bearer eyJhbGciOi.secret.sig",
            ["note"] = "harmless",
        });
        await AuditHarness.SettleAsync(coordinator);

        using var http = coordinator.CreateClient();
        var csv = await http.GetStringAsync("/api/v1/audit:export?format=csv");
        var rows = await AuditHarness.RowsAsync(coordinator);
        var everything = csv + string.Join('\n', rows.Select(r => r.ParametersJson + r.Outcome + r.Target));
        foreach (var secret in new[] { "hunter2", "AKIA-SECRET-1", "s3cr3tpw", "topsecret", "eyJhbGciOi" })
            Assert.DoesNotContain(secret, everything);
        Assert.Contains("harmless", everything);
        Assert.Contains(AuditLog.Redacted, rows.First(r => r.Action == "db.restore").ParametersJson);
    }

    [Fact]
    public async Task TwoCoordinators_WritingConcurrently_KeepOneValidChain()
    {
        var database = new PostgresDatabase();
        await database.InitializeAsync();
        try
        {
            using var shared = new TempDirectory();
            CoordinatorFactory Replica() => new CoordinatorFactory(Store.Postgres, database.ConnectionString).Fast()
                .With("Fleet:Audit:KeyFile", shared.Combine("anchor.key"))
                .With("Fleet:Blobs:Directory", shared.Combine("blobs"));
            using var a = Replica();
            using var b = Replica();
            await Task.WhenAll(Enumerable.Range(0, 10).Select(i => AuditHarness.WriteAsync(i % 2 == 0 ? a : b, 50)));

            await AuditHarness.SettleAsync(a.Services.GetRequiredService<AuditSealer>().IsLeader ? a : b);
            var rows = await AuditHarness.RowsAsync(a);
            Assert.Equal(500, rows.Count(r => r.Action == "test.action"));
            Assert.Equal(2, rows.Count(r => r.Action == "coordinator.started"));
            Assert.Equal(Enumerable.Range(1, 502).Select(i => (long?)i), rows.Select(r => r.Seq));
            Assert.Single(new[] { a, b }, c => c.Services.GetRequiredService<AuditSealer>().IsLeader);
            foreach (var replica in new[] { a, b })
            {
                var result = await AuditHarness.VerifyAsync(replica);
                Assert.True(result.Ok, result.Problem);
                Assert.Equal(502, result.RowsChecked);
            }
        }
        finally
        {
            await database.DisposeAsync();
        }
    }

    [Fact]
    public async Task Sealer_CatchesUp_AfterBeingStopped()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite).Fast();
        await AuditHarness.WriteAsync(coordinator, 5);
        await AuditHarness.SettleAsync(coordinator);
        var sealer = coordinator.Services.GetRequiredService<AuditSealer>();
        await sealer.StopAsync(CancellationToken.None);

        await AuditHarness.WriteAsync(coordinator, 300);
        var paused = await AuditHarness.VerifyAsync(coordinator);
        Assert.True(paused.Ok, paused.Problem);
        Assert.Equal(300, paused.UnsealedRows);
        Assert.Equal(6, paused.RowsChecked); // coordinator.started + 5

        await sealer.StartAsync(CancellationToken.None);
        await AuditHarness.SettleAsync(coordinator);
        var caughtUp = await AuditHarness.VerifyAsync(coordinator);
        Assert.True(caughtUp.Ok, caughtUp.Problem);
        Assert.Equal(306, caughtUp.RowsChecked);
        Assert.Equal(0, caughtUp.UnsealedRows);
    }

    [Fact]
    public async Task ArchiveThenDelete_KeepsVerificationAcrossTheBoundary()
    {
        var database = new PostgresDatabase();
        await database.InitializeAsync();
        try
        {
            // 120 rows written 100 days ago, before this coordinator ever started (schema applied by hand first).
            await using (var db = new PostgresFleetDbContext(new DbContextOptionsBuilder<PostgresFleetDbContext>().UseNpgsql(database.ConnectionString).Options))
            {
                await db.Database.MigrateAsync();
                var old = DateTime.UtcNow.Date.AddDays(-100).AddHours(3);
                for (var i = 0; i < 120; i++)
                    db.Set<AuditRecord>().Add(new AuditRecord { Time = old.AddMinutes(i), ActorKind = "user", Actor = "old", Action = "test.old", Target = $"t{i}" });
                await db.SaveChangesAsync();
            }
            using var coordinator = new CoordinatorFactory(Store.Postgres, database.ConnectionString).Fast()
                .With("Fleet:Audit:RetentionInterval", "00:00:00.300");
            await AuditHarness.WriteAsync(coordinator, 30, "test.recent");

            await Eventually.UntilAsync(async () =>
            {
                await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
                return await db.Set<AuditArchiveBoundary>().AnyAsync();
            }, "the old days to be archived");
            await AuditHarness.SettleAsync(coordinator);

            var rows = await AuditHarness.RowsAsync(coordinator);
            Assert.DoesNotContain(rows, r => r.Action == "test.old");
            Assert.Equal(30, rows.Count(r => r.Action == "test.recent"));
            var archivedEvent = Assert.Single(rows, r => r.Action == "audit.archived");
            Assert.Contains("\"rows\":\"120\"", archivedEvent.ParametersJson);

            var result = await AuditHarness.VerifyAsync(coordinator);
            Assert.True(result.Ok, result.Problem);
            Assert.Equal(121, result.FirstSeq);

            // The archive holds exactly the deleted rows, readable as gzip JSON Lines.
            var blobs = coordinator.Services.GetRequiredService<Fleet.Coordinator.Blobs.IBlobStore>();
            var archives = new List<string>();
            await foreach (var blob in blobs.ListAsync(AuditRetention.Prefix, CancellationToken.None)) archives.Add(blob.Key);
            var key = Assert.Single(archives);
            await using var stream = (await blobs.OpenReadAsync(key, CancellationToken.None))!;
            await using var gzip = new System.IO.Compression.GZipStream(stream, System.IO.Compression.CompressionMode.Decompress);
            using var reader = new StreamReader(gzip);
            var lines = (await reader.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(120, lines.Length);
            Assert.All(lines, l => Assert.Equal("test.old", JsonDocument.Parse(l).RootElement.GetProperty("action").GetString()));
        }
        finally
        {
            await database.DisposeAsync();
        }
    }

    [Fact]
    public async Task Query_Filters_PagesWithACursor_AndRejectsBadInputNamingTheField()
    {
        using var coordinator = new CoordinatorFactory(Store.Postgres, postgres.ConnectionString).Fast();
        var marker = "q" + Guid.NewGuid().ToString("N")[..8];
        await AuditHarness.WriteAsync(coordinator, 25, "query." + marker);
        var audit = new Protocol.V1.Audit.AuditClient(coordinator.Channel());

        var seen = new List<AuditEvent>();
        var request = new ListAuditEventsRequest { Action = "query." + marker, PageSize = 10 };
        do
        {
            var page = await audit.ListAuditEventsAsync(request);
            seen.AddRange(page.Events);
            request.PageToken = page.NextPageToken;
        }
        while (request.PageToken.Length > 0);
        Assert.Equal(25, seen.Count);
        Assert.Equal(seen.Select(e => e.Id).Order(), seen.Select(e => e.Id));

        var host1 = await audit.ListAuditEventsAsync(new ListAuditEventsRequest { Action = "query." + marker, Host = "host-1", PageSize = 100 });
        Assert.Equal(8, host1.Events.Count);
        var text = await audit.ListAuditEventsAsync(new ListAuditEventsRequest { Q = "THING:24", Action = "query.*", PageSize = 100 });
        Assert.Contains(text.Events, e => e.Target == "thing:24");

        var badSize = await Assert.ThrowsAsync<RpcException>(() => audit.ListAuditEventsAsync(new ListAuditEventsRequest { PageSize = 5000 }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, badSize.StatusCode);
        Assert.Contains("page_size", badSize.Status.Detail);
        var badToken = await Assert.ThrowsAsync<RpcException>(() => audit.ListAuditEventsAsync(new ListAuditEventsRequest { PageToken = "garbage!" }).ResponseAsync);
        Assert.Contains("page_token", badToken.Status.Detail);

        using var http = coordinator.CreateClient();
        var bad = await http.GetAsync("/api/v1/audit:export?format=xml");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("format", await bad.Content.ReadAsStringAsync());
        var rest = await http.GetFromJsonAsync<JsonElement>($"/api/v1/audit?action=query.{marker}&pageSize=5");
        Assert.Equal(5, rest.GetProperty("events").GetArrayLength());
    }

    [Fact]
    public async Task Export_RoundTrips_AsJsonLinesAndCsv()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite).Fast();
        await AuditHarness.WriteAsync(coordinator, 12, "export.test", i => new Dictionary<string, string?> { ["note"] = $"a, \"quoted\"\nline {i}" });
        await AuditHarness.SettleAsync(coordinator);
        var expected = (await AuditHarness.RowsAsync(coordinator)).Where(r => r.Action == "export.test").ToList();

        var audit = new Protocol.V1.Audit.AuditClient(coordinator.Channel());
        using var call = audit.ExportAuditEvents(new ListAuditEventsRequest { Action = "export.test" });
        var streamed = new List<AuditEvent>();
        while (await call.ResponseStream.MoveNext(CancellationToken.None)) streamed.Add(call.ResponseStream.Current);
        Assert.Equal(expected.Select(e => (e.Seq, e.ParametersJson, AuditChain.Hex(e.Hash))), streamed.Select(e => ((long?)e.Seq, e.ParametersJson, e.Hash)));

        using var http = coordinator.CreateClient();
        var csv = await http.GetStringAsync("/api/v1/audit:export?format=csv&action=export.test");
        var records = Csv.Parse(csv);
        Assert.Equal(AuditCsv.Header.Split(','), records[0]);
        Assert.Equal(expected.Count, records.Count - 1);
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].ParametersJson, records[i + 1][10]);
            Assert.Equal(AuditChain.Hex(expected[i].Hash), records[i + 1][11]);
        }

        var jsonl = await http.GetStringAsync("/api/v1/audit:export?format=jsonl&action=export.test");
        var parsed = jsonl.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => AuditEvent.Parser.ParseJson(l)).ToList();
        Assert.Equal(streamed, parsed);
    }

    static class Csv
    {
        public static List<string[]> Parse(string text)
        {
            var records = new List<string[]>();
            var fields = new List<string>();
            var field = new System.Text.StringBuilder();
            var quoted = false;
            for (var i = 0; i < text.Length; i++)
            {
                var c = text[i];
                if (quoted)
                {
                    if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                    else if (c == '"') quoted = false;
                    else field.Append(c);
                }
                else if (c == '"') quoted = true;
                else if (c == ',') { fields.Add(field.ToString()); field.Clear(); }
                else if (c == '\n') { fields.Add(field.ToString()); field.Clear(); records.Add([.. fields]); fields.Clear(); }
                else field.Append(c);
            }
            return records;
        }
    }
}
