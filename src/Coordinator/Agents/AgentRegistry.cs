using System.Text.Json;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Agents;

/// <summary>Writes what the coordinator knows about agents: registration on hello, last seen on disconnect, removal.</summary>
public sealed class AgentRegistry(IDbContextFactory<FleetDbContext> dbFactory, TimeProvider time)
{
    static readonly JsonFormatter TaskFormatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(false));

    public async Task RegisterAsync(Hello hello, string replicaId, CancellationToken cancellationToken)
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

    public async Task TouchAsync(string agentId, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var now = time.GetUtcNow().UtcDateTime;
        await db.Agents.Where(a => a.Id == agentId).ExecuteUpdateAsync(s => s.SetProperty(a => a.LastSeen, now), cancellationToken);
    }

    /// <summary>Deletes the agent and what it sent; true when it existed.</summary>
    public async Task<bool> RemoveAsync(string agentId, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        var removed = await db.Agents.Where(a => a.Id == agentId).ExecuteDeleteAsync(cancellationToken);
        await db.AgentEvents.Where(e => e.AgentId == agentId).ExecuteDeleteAsync(cancellationToken);
        await db.ReceivedBatches.Where(b => b.AgentId == agentId).ExecuteDeleteAsync(cancellationToken);
        await tx.CommitAsync(cancellationToken);
        return removed > 0;
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
