using System.Net;
using Fleet.Agent;
using Fleet.Agent.Configuration;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Storage;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Embedded;

/// <summary>Section "Fleet:EmbeddedAgent".</summary>
public sealed class EmbeddedAgentOptions : System.ComponentModel.DataAnnotations.IValidatableObject
{
    public const string Section = "Fleet:EmbeddedAgent";

    /// <summary>Run an agent for this host inside the coordinator. Default: on in embedded (SQLite) mode, off with PostgreSQL.</summary>
    public bool? Enabled { get; set; }

    /// <summary>How often the embedded agent's collectors run and its samples are sent.</summary>
    public TimeSpan MetricsInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Log sources the embedded agent ships, with the keys of agent.json's <c>logs</c> section:
    /// <c>Fleet:EmbeddedAgent:Logs:Sources:0:Name</c>, <c>...:Path</c> (a glob), <c>...:StartAt</c>, <c>Fleet:EmbeddedAgent:Logs:Redact:0</c>, ...
    /// None by default.
    /// </summary>
    public Fleet.Agent.Logs.LogsConfigDocument? Logs { get; set; }

    /// <summary>The validated log settings (empty without <see cref="Logs"/>); throws naming the key when invalid.</summary>
    internal Fleet.Agent.Logs.LogSettings LogSettings() =>
        Logs is null
            ? new Fleet.Agent.Logs.LogSettings()
            : Fleet.Agent.Logs.LogConfig.Validate(Logs, (key, problem) =>
                throw new AgentConfigException($"{Section}:Logs: key '{key}': {problem}"));

    public IEnumerable<System.ComponentModel.DataAnnotations.ValidationResult> Validate(System.ComponentModel.DataAnnotations.ValidationContext validationContext)
    {
        string? problem = null;
        try { LogSettings(); }
        catch (AgentConfigException ex) { problem = ex.Message; }
        if (problem is not null) yield return new(problem, [nameof(Logs)]);
    }
}

public static partial class EmbeddedAgentExtensions
{
    /// <summary>
    /// In embedded mode the coordinator also runs an agent for the local host, so a newcomer sees their own
    /// machine at once. It is a real agent: it talks to this process over loopback gRPC like any other.
    /// </summary>
    public static WebApplicationBuilder AddEmbeddedAgent(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<EmbeddedAgentOptions>().BindConfiguration(EmbeddedAgentOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        var enabled = builder.Configuration.GetValue<bool?>($"{EmbeddedAgentOptions.Section}:Enabled")
                      ?? builder.Configuration.Provider() == StorageProvider.Sqlite;
        if (enabled)
            builder.Services.AddHostedService<EmbeddedAgentService>();
        return builder;
    }

    sealed partial class EmbeddedAgentService(
        IOptions<FleetOptions> fleet,
        IOptions<ListenOptions> listen,
        IOptions<EmbeddedAgentOptions> embedded,
        IHostApplicationLifetime lifetime,
        ILoggerFactory loggerFactory,
        ILogger<EmbeddedAgentService> logger) : IHostedService
    {
        IHost? agent;
        CancellationTokenRegistration started;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            // Start once Kestrel listens, so the agent's first connection succeeds.
            started = lifetime.ApplicationStarted.Register(() => _ = StartAgentAsync());
            return Task.CompletedTask;
        }

        async Task StartAgentAsync()
        {
            var address = IPAddress.Parse(listen.Value.Address);
            if (address.Equals(IPAddress.Any)) address = IPAddress.Loopback;
            if (address.Equals(IPAddress.IPv6Any)) address = IPAddress.IPv6Loopback;
            var dataDirectory = Path.GetFullPath(fleet.Value.DataDirectory);
            string policyFile;
            try { policyFile = EnsureDefaultPolicy(dataDirectory); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                LogFailed($"cannot write the default local policy in {dataDirectory}: {ex.Message}");
                return;
            }
            var host = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
            var options = new AgentOptions
            {
                PolicyFile = policyFile,
                Coordinator = new Uri($"http://{host}:{listen.Value.GrpcPort}"),
                // One probe out of the box, so health.check and the overview have something real to show: this coordinator.
                Probes =
                [
                    new Fleet.Agent.Probes.ProbeSettings
                    {
                        Name = "coordinator", Kind = Fleet.Agent.Probes.ProbeKinds.Http,
                        Url = new Uri($"http://{host}:{listen.Value.RestPort}/healthz"), ExpectedStatus = 200,
                    },
                ],
                StateDirectory = Path.Combine(dataDirectory, "agent"),
                Logs = embedded.Value.LogSettings(),
                Tags = new() { ["embedded"] = "true" },
                MetricsFlushInterval = embedded.Value.MetricsInterval,
                Collectors = AgentOptions.DefaultCollectors().ToDictionary(c => c.Key, _ => new Fleet.Agent.Collectors.CollectorSettings
                {
                    Interval = embedded.Value.MetricsInterval,
                    Timeout = embedded.Value.MetricsInterval < TimeSpan.FromSeconds(5) ? embedded.Value.MetricsInterval : TimeSpan.FromSeconds(5),
                }),
            };
            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            builder.Services.AddSingleton(loggerFactory);
            builder.Services.AddSingleton(typeof(ILogger<>), typeof(Logger<>));
            builder.Services.AddFleetAgent(options);
            try
            {
                agent = builder.Build();
                await agent.StartAsync(lifetime.ApplicationStopping);
                LogStarted(options.Coordinator, options.StateDirectory);
            }
            catch (Exception ex) when (ex is AgentConfigException or IOException or UnauthorizedAccessException)
            {
                LogFailed(ex.Message);
            }
        }

        /// <summary>
        /// The embedded agent's local policy, DATA/agent-policy.json: written once if absent (an operator may then
        /// edit it), allowing the read-only tasks: health.check, system.resources, logs.scan of /var/log and the
        /// data directory, service.status of any service. Restarts and app commands need the operator to add them.
        /// </summary>
        internal static string EnsureDefaultPolicy(string dataDirectory)
        {
            Directory.CreateDirectory(dataDirectory);
            var path = Path.Combine(dataDirectory, "agent-policy.json");
            if (File.Exists(path)) return path;
            var dataGlob = System.Text.Json.JsonEncodedText.Encode(dataDirectory.TrimEnd('/') + "/**").ToString();
            var policy = $$"""
                {
                  // Written by the coordinator's embedded agent; edit to allow more (see the operator guide, "Local policy").
                  "tasks": {
                    "health.check": {},
                    "system.resources": {},
                    "logs.scan": { "paths": ["/var/log/**", "{{dataGlob}}"] },
                    "service.status": { "services": ["*"] }
                  }
                }

                """;
            var temporary = path + ".tmp";
            File.WriteAllText(temporary, policy);
            File.Move(temporary, path, overwrite: false);
            return path;
        }

        public async Task StopAsync(CancellationToken cancellationToken)
        {
            await started.DisposeAsync();
            if (agent is not null)
            {
                await agent.StopAsync(cancellationToken);
                agent.Dispose();
            }
        }

        [LoggerMessage(Level = LogLevel.Information, Message = "Embedded agent for this host started (coordinator {Coordinator}, state {StateDirectory})")]
        partial void LogStarted(Uri coordinator, string stateDirectory);

        [LoggerMessage(Level = LogLevel.Error, Message = "Embedded agent could not start: {Problem}")]
        partial void LogFailed(string problem);
    }
}
