using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Testing;

namespace Fleet.Coordinator.Tests.Audit;

/// <summary>Tampering with the stored trail is detected and the right sequence number is named (real PostgreSQL).</summary>
public sealed class AuditTamperTests : IAsyncLifetime
{
    readonly PostgresDatabase database = new();
    CoordinatorFactory coordinator = null!;

    public async Task InitializeAsync()
    {
        await database.InitializeAsync();
        coordinator = new CoordinatorFactory(Store.Postgres, database.ConnectionString).Fast();
        await AuditHarness.WriteAsync(coordinator, 20);
        await AuditHarness.SettleAsync(coordinator);
        var clean = await AuditHarness.VerifyAsync(coordinator);
        Assert.True(clean.Ok, clean.Problem);
        Assert.Equal(21, clean.RowsChecked); // coordinator.started + 20
        Assert.Equal(21, clean.LastAnchoredSeq);
    }

    public async Task DisposeAsync()
    {
        coordinator.Dispose();
        await database.DisposeAsync();
    }

    [Fact]
    public async Task AlteredRow_IsNamed()
    {
        await AuditHarness.SqlAsync(coordinator, """UPDATE audit_events SET "Actor" = 'mallory' WHERE "Seq" = 7""");
        var result = await AuditHarness.VerifyAsync(coordinator);
        Assert.False(result.Ok);
        Assert.Equal(7, result.FirstBrokenSeq);
        Assert.Contains("seq 7", result.Problem);
    }

    [Fact]
    public async Task DeletedRow_IsNamed()
    {
        await AuditHarness.SqlAsync(coordinator, """DELETE FROM audit_events WHERE "Seq" = 7""");
        var result = await AuditHarness.VerifyAsync(coordinator);
        Assert.False(result.Ok);
        Assert.Equal(7, result.FirstBrokenSeq);
        Assert.Contains("missing", result.Problem);
    }

    [Fact]
    public async Task DeletedTail_IsNamed_ByTheAnchor()
    {
        await AuditHarness.SqlAsync(coordinator, """DELETE FROM audit_events WHERE "Seq" >= 18""");
        var result = await AuditHarness.VerifyAsync(coordinator);
        Assert.False(result.Ok);
        Assert.Equal(18, result.FirstBrokenSeq);
    }

    [Fact]
    public async Task SwappedRows_AreNamed()
    {
        await AuditHarness.SqlAsync(coordinator, """
            UPDATE audit_events SET "Seq" = -1 WHERE "Seq" = 5;
            UPDATE audit_events SET "Seq" = 5 WHERE "Seq" = 6;
            UPDATE audit_events SET "Seq" = 6 WHERE "Seq" = -1;
            """);
        var result = await AuditHarness.VerifyAsync(coordinator);
        Assert.False(result.Ok);
        Assert.Equal(5, result.FirstBrokenSeq);
    }

    [Fact]
    public async Task InsertedRow_IsNamed()
    {
        // Make room at seq 10 and insert a forged row there, as someone with write access to the table could.
        await AuditHarness.SqlAsync(coordinator, """
            UPDATE audit_events SET "Seq" = "Seq" + 1000 WHERE "Seq" >= 10;
            UPDATE audit_events SET "Seq" = "Seq" - 999 WHERE "Seq" >= 1010;
            INSERT INTO audit_events ("Seq","Time","ActorKind","Actor","RemoteAddress","Action","Target","Host","ParametersJson","Outcome","Hash")
            VALUES (10, now(), 'user', 'mallory', '', 'agent.removed', 'agent:x', 'x', '{{}}', 'ok', decode(repeat('00', 32), 'hex'));
            """);
        var result = await AuditHarness.VerifyAsync(coordinator);
        Assert.False(result.Ok);
        Assert.Equal(10, result.FirstBrokenSeq);
    }

    [Fact]
    public async Task AlteredRow_WithEveryLaterHashRecomputed_IsNamed_ByTheSignedAnchor()
    {
        await AuditHarness.SqlAsync(coordinator, """UPDATE audit_events SET "Outcome" = 'error: nothing happened' WHERE "Seq" = 7""");
        // The attacker knows the chain rule and rewrites every hash from seq 7 on, so the chain itself is consistent.
        var rows = await AuditHarness.RowsAsync(coordinator);
        var previous = rows.Single(r => r.Seq == 6).Hash!;
        foreach (var row in rows.Where(r => r.Seq >= 7))
        {
            var hash = AuditChain.Hash(previous, new AuditChain.Row(row.Seq!.Value, row.Id, row.Time, row.ActorKind, row.Actor, row.RemoteAddress,
                row.Action, row.Target, row.Host, row.ParametersJson, row.Outcome));
            await AuditHarness.SqlAsync(coordinator, """UPDATE audit_events SET "Hash" = {0} WHERE "Seq" = {1}""", hash, row.Seq);
            previous = hash;
        }

        var result = await AuditHarness.VerifyAsync(coordinator);
        Assert.False(result.Ok);
        Assert.Equal(7, result.FirstBrokenSeq);
        Assert.Contains("signed anchor", result.Problem);
    }
}
