using System.Text.Json;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Agents;

/// <summary>Writes what the coordinator knows about agents: registration on hello, last seen on disconnect, removal.</summary>
public sealed class AgentRegistry(IDbContextFactory<FleetDbContext> dbFactory, AuditLog audit, TimeProvider time)
{
    static readonly JsonFormatter TaskFormatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(false));

    public async Task RegisterAsync(Hello hello, string replicaId, string remoteAddress, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        for (var attempt = 0; ; attempt++)
        {
            await using var db = dbFactory.CreateDbContext();
            var record = await db.Agents.FindAsync([hello.AgentId], cancellationToken);
            if (record is null)
            {
                record = new AgentRecord { Id = hello.AgentId, Hostname = hello.Hostname, FirstSeen = now };
                db.Agents.Add(record);
            }
            record.Hostname = hello.Hostname;
            record.MachineId = hello.MachineId;
            record.Os = hello.Os;
            record.Kernel = hello.Kernel;
            record.AgentVersion = hello.AgentVersion;
            record.ProtocolVersion = (int)hello.ProtocolVersion;
            record.TagsJson = JsonSerializer.Serialize(hello.Tags.ToDictionary(t => t.Key, t => t.Value));
            record.TasksJson = "[" + string.Join(",", hello.Tasks.Select(t => TaskFormatter.Format(t))) + "]";
            record.Epoch = unchecked((long)hello.Epoch);
            record.LastSeen = now;
            record.Replica = replicaId;
            audit.Add(db, new Actor(ActorKind.Agent, hello.AgentId, remoteAddress), "agent.connected", target: $"agent:{hello.AgentId}", host: hello.AgentId,
                parameters: new Dictionary<string, string?> { ["hostname"] = hello.Hostname, ["version"] = hello.AgentVersion, ["replica"] = replicaId });
            try
            {
                await db.SaveChangesAsync(cancellationToken);
                return;
            }
            catch (DbUpdateException) when (attempt < 3)
            {
                // Two streams of a brand-new agent raced to insert it: the row exists now, update it.
            }
        }
    }

    /// <summary>Records the end of a stream: last seen, and an audit event with the reason.</summary>
    public async Task DisconnectedAsync(string agentId, string remoteAddress, string reason, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        var now = time.GetUtcNow().UtcDateTime;
        var updated = await db.Agents.Where(a => a.Id == agentId).ExecuteUpdateAsync(s => s.SetProperty(a => a.LastSeen, now), cancellationToken);
        if (updated > 0)
        {
            audit.Add(db, new Actor(ActorKind.Agent, agentId, remoteAddress), "agent.disconnected", target: $"agent:{agentId}", host: agentId,
                parameters: new Dictionary<string, string?> { ["reason"] = reason });
            await db.SaveChangesAsync(cancellationToken);
        }
        await tx.CommitAsync(cancellationToken);
    }

    /// <summary>Deletes the agent and what it sent; true when it existed.</summary>
    public async Task<bool> RemoveAsync(string agentId, Actor actor, bool wasOnline, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        var removed = await db.Agents.Where(a => a.Id == agentId).ExecuteDeleteAsync(cancellationToken);
        await db.AgentEvents.Where(e => e.AgentId == agentId).ExecuteDeleteAsync(cancellationToken);
        await db.ReceivedBatches.Where(b => b.AgentId == agentId).ExecuteDeleteAsync(cancellationToken);
        await db.Set<Metrics.MetricSampleRecord>().Where(m => m.AgentId == agentId).ExecuteDeleteAsync(cancellationToken);
        await db.Set<Metrics.ProbeResultRecord>().Where(p => p.AgentId == agentId).ExecuteDeleteAsync(cancellationToken);
        if (removed == 0) return false; // nothing changed: the transaction rolls back, no audit row
        audit.Add(db, actor, "agent.removed", target: $"agent:{agentId}", host: agentId,
            parameters: new Dictionary<string, string?> { ["id"] = agentId, ["wasOnline"] = wasOnline ? "true" : "false" });
        await db.SaveChangesAsync(cancellationToken);
        await tx.CommitAsync(cancellationToken);
        return true;
    }

    public static Dictionary<string, string> Tags(AgentRecord record) =>
        JsonSerializer.Deserialize<Dictionary<string, string>>(record.TagsJson) ?? [];

    public static IEnumerable<TaskDescriptor> Tasks(AgentRecord record)
    {
        using var doc = JsonDocument.Parse(record.TasksJson);
        foreach (var element in doc.RootElement.EnumerateArray())
            yield return TaskDescriptor.Parser.ParseJson(element.GetRawText());
    }
}
