using System.Globalization;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Audit;

/// <summary>Records each coordinator start with the configuration in effect (no secrets: connection strings are not included).</summary>
sealed class StartupAudit(
    IDbContextFactory<FleetDbContext> dbFactory,
    AuditLog audit,
    IConfiguration configuration,
    Microsoft.Extensions.Options.IOptions<Hosting.FleetOptions> fleet,
    Microsoft.Extensions.Options.IOptions<Hosting.ListenOptions> listen,
    Microsoft.Extensions.Options.IOptions<AuditOptions> auditOptions) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        audit.Add(db, Security.Actor.System("coordinator"), "coordinator.started", target: $"replica:{fleet.Value.EffectiveReplicaId}", parameters: new Dictionary<string, string?>
        {
            ["version"] = typeof(StartupAudit).Assembly.GetName().Version?.ToString(3),
            ["storage"] = configuration.Provider().ToString(),
            ["redis"] = Hosting.RedisExtensions.HasRedis(configuration) ? "configured" : "in-process",
            ["listen"] = $"{listen.Value.Address}:{listen.Value.RestPort}/{listen.Value.GrpcPort}",
            ["auditRetention"] = auditOptions.Value.Retention.ToString(),
            ["auditAnchorInterval"] = auditOptions.Value.AnchorInterval.ToString(),
        });
        await db.SaveChangesAsync(cancellationToken);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
