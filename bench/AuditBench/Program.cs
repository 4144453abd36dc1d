// Audit sealing and verification benchmark. Writers insert unsealed audit rows the way business transactions do
// (one transaction per batch); the coordinator's sealer (a separate process on the same database) seals them.
//   fleet-auditbench --pg CONNSTR --coordinator http://127.0.0.1:PORT --rows 200000 --writers 3 --batch 100 [--verify]
using System.Diagnostics;
using System.Globalization;
using Fleet.Protocol.V1;
using Grpc.Net.Client;
using Npgsql;

var options = args.Select((a, i) => (a, i)).Where(x => x.a.StartsWith("--", StringComparison.Ordinal))
    .ToDictionary(x => x.a[2..], x => x.i + 1 < args.Length && !args[x.i + 1].StartsWith("--", StringComparison.Ordinal) ? args[x.i + 1] : "true");
string Opt(string name, string? fallback = null) => options.TryGetValue(name, out var v) ? v : fallback ?? throw new ArgumentException($"--{name} is required");
var pg = Opt("pg");
var rows = int.Parse(Opt("rows", "100000"), CultureInfo.InvariantCulture);
var writers = int.Parse(Opt("writers", "1"), CultureInfo.InvariantCulture);
var batch = int.Parse(Opt("batch", "100"), CultureInfo.InvariantCulture);
var coordinator = Opt("coordinator", "http://127.0.0.1:5081");

await using var data = NpgsqlDataSource.Create(pg);
if (rows > 0)
{
    var start = Stopwatch.StartNew();
    var perWriter = rows / writers;
    var writeTasks = Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
    {
        await using var connection = await data.OpenConnectionAsync();
        for (var done = 0; done < perWriter; done += batch)
        {
            var n = Math.Min(batch, perWriter - done);
            await using var tx = await connection.BeginTransactionAsync();
            await using var command = new NpgsqlCommand("""
                INSERT INTO audit_events ("Time","ActorKind","Actor","RemoteAddress","Action","Target","Host","ParametersJson","Outcome")
                SELECT now(), 'user', 'bench-' || @w, '127.0.0.1', 'bench.write', 'thing:' || g, 'host-' || (g % 100), '{"n":"' || g || '"}', 'ok'
                FROM generate_series(@from, @to) AS g
                """, connection, tx);
            command.Parameters.AddWithValue("w", w.ToString(CultureInfo.InvariantCulture));
            command.Parameters.AddWithValue("from", done);
            command.Parameters.AddWithValue("to", done + n - 1);
            await command.ExecuteNonQueryAsync();
            await tx.CommitAsync();
        }
    })).ToArray();
    await Task.WhenAll(writeTasks);
    var written = start.Elapsed;
    // Sealed = no unsealed row left.
    await using (var connection = await data.OpenConnectionAsync())
    {
        while (true)
        {
            await using var count = new NpgsqlCommand("""SELECT count(*) FROM audit_events WHERE "Seq" IS NULL""", connection);
            if ((long)(await count.ExecuteScalarAsync())! == 0) break;
            await Task.Delay(20);
        }
    }
    var sealedAt = start.Elapsed;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"rows={perWriter * writers} writers={writers} batch={batch} inserted_in={written.TotalSeconds:0.00}s insert_rate={perWriter * writers / written.TotalSeconds:0}/s all_sealed_in={sealedAt.TotalSeconds:0.00}s sealed_rate={perWriter * writers / sealedAt.TotalSeconds:0}/s"));
}

if (options.ContainsKey("verify"))
{
    using var channel = GrpcChannel.ForAddress(coordinator);
    var client = new Audit.AuditClient(channel);
    var sw = Stopwatch.StartNew();
    var result = await client.VerifyAuditAsync(new VerifyAuditRequest(), deadline: DateTime.UtcNow.AddMinutes(10));
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"verify ok={result.Ok} rows={result.RowsChecked} anchors={result.AnchorsChecked} last_anchored={result.LastAnchoredSeq} in={sw.Elapsed.TotalSeconds:0.00}s rate={result.RowsChecked / sw.Elapsed.TotalSeconds:0}/s {result.Problem}"));
}
