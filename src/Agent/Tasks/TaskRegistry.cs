using System.Collections.Frozen;
using Fleet.Agent.Tasks.Runbook;
using Fleet.Protocol.V1;

namespace Fleet.Agent.Tasks;

/// <summary>Tasks by name. The hello carries <see cref="Catalog"/>; dispatches are looked up here (never a switch over names).</summary>
public sealed class TaskRegistry
{
    readonly FrozenDictionary<string, IAgentTask> tasks;

    public TaskRegistry(IEnumerable<IAgentTask> tasks)
    {
        this.tasks = tasks.ToFrozenDictionary(t => t.Descriptor.Name, StringComparer.Ordinal);
        Names = [.. this.tasks.Keys.Order(StringComparer.Ordinal)];
    }

    /// <summary>The daily runbook.</summary>
    public static TaskRegistry Default { get; } = new(
    [
        new HealthCheckTask(),
        new SystemResourcesTask(),
        new LogsScanTask(),
        new ServiceStatusTask(),
        new ServiceRestartTask(),
        new AppCommandTask(),
    ]);

    public IReadOnlyList<string> Names { get; }

    public IEnumerable<TaskDescriptor> Catalog => Names.Select(n => tasks[n].Descriptor);

    public bool TryGet(string name, out IAgentTask task) => tasks.TryGetValue(name, out task!);
}
