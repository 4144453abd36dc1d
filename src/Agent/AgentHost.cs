using Fleet.Agent.Configuration;
using Fleet.Agent.Events;
using Fleet.Agent.Identity;
using Fleet.Agent.Commands;
using Fleet.Agent.Outbox;
using Fleet.Agent.Policy;
using Fleet.Agent.Tasks;
using Fleet.Agent.Transport;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Fleet.Agent;

/// <summary>Registers the agent's parts. Used by the agent process and by the coordinator's embedded mode.</summary>
public static class AgentHost
{
    public static IServiceCollection AddFleetAgent(this IServiceCollection services, AgentOptions options, Func<HttpMessageHandler>? handlerFactory = null)
    {
        services.AddSingleton(options);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(_ => AgentIdentity.Load(options));
        services.AddSingleton(sp => DurableOutbox.Open(
            new OutboxOptions { Directory = Path.Combine(options.StateDirectory, "outbox"), MaxBytes = options.OutboxMaxBytes },
            sp.GetRequiredService<ILogger<DurableOutbox>>(),
            sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<AgentEventPublisher>();
        services.AddSingleton<CentralConfig>();
        services.AddAgentTasks(options);
        services.AddSingleton(sp => new CoordinatorConnection(
            options,
            sp.GetRequiredService<AgentIdentity>(),
            sp.GetRequiredService<DurableOutbox>(),
            sp.GetRequiredService<CentralConfig>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<CoordinatorConnection>>(),
            handlerFactory,
            sp.GetRequiredService<TaskRuntime>()));
        services.AddHostedService<StartedEvent>();
        services.AddSingleton<Metrics.MetricsPipeline>();
        services.AddHostedService(sp => sp.GetRequiredService<Metrics.MetricsPipeline>());
        services.AddSingleton(sp =>
        {
            var connection = sp.GetRequiredService<CoordinatorConnection>();
            return new Logs.LogPipeline(options, sp.GetRequiredService<DurableOutbox>(), sp.GetRequiredService<ICommandRunner>(),
                sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILoggerFactory>(), sp.GetRequiredService<ILogger<Logs.LogPipeline>>())
            {
                CoordinatorConnected = () => connection.State == ConnectionState.Connected,
            };
        });
        services.AddHostedService(sp => sp.GetRequiredService<Logs.LogPipeline>());
        services.AddHostedService(sp => sp.GetRequiredService<CoordinatorConnection>());
        services.AddSingleton(sp =>
        {
            var connection = sp.GetRequiredService<CoordinatorConnection>();
            return new OutboxDropReporter(sp.GetRequiredService<DurableOutbox>(), () => connection.State == ConnectionState.Connected,
                sp.GetRequiredService<AgentEventPublisher>(), options, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<OutboxDropReporter>>());
        });
        services.AddHostedService(sp => sp.GetRequiredService<OutboxDropReporter>());
        return services;
    }

    /// <summary>Runs: the task registry, local policy, invocation journal and runtime (recovers interrupted invocations at start).</summary>
    static IServiceCollection AddAgentTasks(this IServiceCollection services, AgentOptions options)
    {
        services.TryAddSingleton<ICommandRunner, CommandRunner>();
        services.TryAddSingleton(TaskRegistry.Default);
        services.AddSingleton(sp => LocalPolicy.Load(options.PolicyFile, sp.GetRequiredService<TaskRegistry>().Names));
        services.AddSingleton(sp => InvocationJournal.Open(options.StateDirectory, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<InvocationJournal>>()));
        services.AddSingleton<TaskUpdatePublisher>();
        services.AddSingleton<TaskRuntime>();
        services.AddHostedService(sp => sp.GetRequiredService<TaskRuntime>());
        return services;
    }

    /// <summary>Records "agent.started" through the outbox, so the coordinator keeps a history of restarts.</summary>
    sealed class StartedEvent(AgentEventPublisher events, AgentIdentity identity) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken) =>
            await events.PublishAsync("agent.started", $"fleet-agent {identity.Version} started on {identity.Hostname}",
                new Dictionary<string, string> { ["version"] = identity.Version, ["pid"] = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                cancellationToken);

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
