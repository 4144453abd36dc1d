using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Coordinator.Tests.Audit;

/// <summary>Coordinators with a fast sealer and anchors, and ways to write, seal and verify audit rows.</summary>
static class AuditHarness
{
    public static CoordinatorFactory Fast(this CoordinatorFactory factory) => factory
        .With("Fleet:Audit:SealInterval", "00:00:00.050")
        .With("Fleet:Audit:AnchorInterval", "00:00:00.200");

    public static async Task WriteAsync(CoordinatorFactory coordinator, int count, string action = "test.action", Func<int, IReadOnlyDictionary<string, string?>>? parameters = null)
    {
        var audit = coordinator.Services.GetRequiredService<AuditLog>();
        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        for (var i = 0; i < count; i++)
            audit.Add(db, new Actor(ActorKind.User, "tester", "127.0.0.1"), action, target: $"thing:{i}", host: "host-" + (i % 3), parameters: parameters?.Invoke(i));
        await db.SaveChangesAsync();
    }

    /// <summary>Waits until every row is sealed and the chain head is anchored.</summary>
    public static async Task SettleAsync(CoordinatorFactory coordinator)
    {
        var sealer = coordinator.Services.GetRequiredService<AuditSealer>();
        var dbFactory = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>();
        await Eventually.UntilAsync(async () =>
        {
            await using var db = dbFactory.CreateDbContext();
            var unsealed = await db.Set<AuditRecord>().AnyAsync(e => e.Seq == null);
            var head = await db.Set<AuditRecord>().MaxAsync(e => e.Seq) ?? 0;
            return !unsealed && sealer.AnchoredThroughSeq >= head;
        }, "every audit row sealed and anchored");
    }

    public static Task<VerifyAuditResponse> VerifyAsync(CoordinatorFactory coordinator) =>
        new Protocol.V1.Audit.AuditClient(coordinator.Channel()).VerifyAuditAsync(new VerifyAuditRequest()).ResponseAsync;

    public static async Task SqlAsync(CoordinatorFactory coordinator, string sql, params object[] parameters)
    {
        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        await db.Database.ExecuteSqlRawAsync(sql, parameters);
    }

    public static async Task<List<AuditRecord>> RowsAsync(CoordinatorFactory coordinator)
    {
        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        return await db.Set<AuditRecord>().AsNoTracking().OrderBy(e => e.Seq).ToListAsync();
    }
}
