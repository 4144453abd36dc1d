using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Fleet.Testing;
using Grpc.Net.Client;

namespace Fleet.EndToEnd.Tests.Infrastructure;

/// <summary>A real coordinator process on free loopback ports.</summary>
public sealed class CoordinatorProcess : IAsyncDisposable
{
    readonly Dictionary<string, string?> settings;
    readonly string workingDirectory;
    ChildProcess? process;
    bool everReady;

    public int RestPort { get; private set; } = FreePort.Next();
    public int GrpcPort { get; private set; } = FreePort.Next();
    public string RestUrl => $"http://127.0.0.1:{RestPort}";
    public string GrpcUrl => $"http://127.0.0.1:{GrpcPort}";
    public ChildProcess Process => process ?? throw new InvalidOperationException("not started");
    public bool IsRunning => process is { HasExited: false };

    /// <summary>The settings the next <see cref="StartAsync()"/> passes (edit to start it differently).</summary>
    public IDictionary<string, string?> Settings => settings;

    /// <summary>Waits for the process to end on its own (a crash point) and forgets it, so it can be started again; returns its output.</summary>
    public async Task<string> WaitForExitAsync(TimeSpan timeout)
    {
        await Process.WaitForExitAsync(timeout); // also drains the output readers: the last lines are often the point
        var output = Process.Output;
        await Process.DisposeAsync();
        process = null;
        return output;
    }

    CoordinatorProcess(Dictionary<string, string?> settings, string workingDirectory)
    {
        this.settings = settings;
        this.workingDirectory = workingDirectory;
    }

    /// <summary>Settings are configuration keys (Fleet:Agents:HeartbeatTimeout, ConnectionStrings:Postgres, ...), passed as environment variables.</summary>
    public static async Task<CoordinatorProcess> StartAsync(Dictionary<string, string?> settings, string workingDirectory)
    {
        var coordinator = new CoordinatorProcess(settings, workingDirectory);
        await coordinator.StartAsync();
        return coordinator;
    }

    /// <summary>A coordinator on the harness's PostgreSQL and Redis (its own key prefix), data under <paramref name="directory"/>,
    /// with a 1 s heartbeat and a 4 s heartbeat timeout so offline shows within seconds.</summary>
    public static Task<CoordinatorProcess> StartOnPostgresAsync(PostgresDatabase postgres, TempDirectory directory) =>
        StartAsync(new()
        {
            ["ConnectionStrings:Postgres"] = postgres.ConnectionString,
            ["ConnectionStrings:Redis"] = TestServices.Redis,
            ["Fleet:Redis:KeyPrefix"] = TestServices.UniqueName("e2e") + ":",
            ["Fleet:DataDirectory"] = directory.Combine("coordinator"),
            ["Fleet:Agents:HeartbeatInterval"] = "00:00:01",
            ["Fleet:Agents:HeartbeatTimeout"] = "00:00:04",
        }, directory.Path);

    public async Task StartAsync()
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await StartOnceAsync();
                everReady = true;
                return;
            }
            catch (InvalidOperationException e) when (!everReady && attempt < 3 && e.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                // Another process took a port between FreePort's check and the bind. Nobody has used
                // these ports yet (the first start), so take two new ones and start again.
                await Process.DisposeAsync();
                process = null;
                RestPort = FreePort.Next();
                GrpcPort = FreePort.Next();
            }
        }
    }

    /// <summary>
    /// Starts the process without waiting for it to be ready, for a test that expects it to end on its own (a crash
    /// point it may reach before a readiness probe gets an answer); <see cref="WaitForExitAsync"/> then collects it.
    /// </summary>
    public static CoordinatorProcess Launch(Dictionary<string, string?> settings, string workingDirectory)
    {
        var coordinator = new CoordinatorProcess(settings, workingDirectory);
        coordinator.process = coordinator.Spawn();
        return coordinator;
    }

    ChildProcess Spawn()
    {
        var env = settings.ToDictionary(kv => kv.Key.Replace(":", "__", StringComparison.Ordinal), kv => kv.Value);
        env["Fleet__Listen__RestPort"] = RestPort.ToString(CultureInfo.InvariantCulture);
        env["Fleet__Listen__GrpcPort"] = GrpcPort.ToString(CultureInfo.InvariantCulture);
        return ChildProcess.StartDotnet("coordinator", RepoPaths.Coordinator, [], env, workingDirectory);
    }

    async Task StartOnceAsync()
    {
        var started = Spawn();
        process = started;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        // Ends as soon as the process is ready or has exited (an exit fails the start at once, with its output).
        var ready = await Eventually.UntilAsync(async () =>
            started.HasExited ? false : (await http.GetAsync($"{RestUrl}/readyz")).IsSuccessStatusCode,
            ok => ok || started.HasExited, "the coordinator to be ready\n" + started.Output, TimeSpan.FromSeconds(60));
        if (ready) return;
        await started.WaitForExitAsync(TimeSpan.FromSeconds(10)); // flushes the output readers
        throw new InvalidOperationException("coordinator exited during start:\n" + started.Output);
    }

    /// <summary>Stops the coordinator (SIGTERM) so it can be started again on the same ports with <see cref="StartAsync()"/>.</summary>
    public async Task StopAsync()
    {
        await Process.TerminateAsync();
        await Process.DisposeAsync();
        process = null;
    }

    public async Task RestartAsync()
    {
        await Process.TerminateAsync();
        await Process.DisposeAsync();
        await StartAsync();
    }

    public GrpcChannel Channel() => GrpcChannel.ForAddress(GrpcUrl);

    /// <summary>GET /api/v1/agents: id → status.</summary>
    public async Task<Dictionary<string, string>> AgentStatusesAsync()
    {
        using var http = new HttpClient();
        using var doc = JsonDocument.Parse(await http.GetStringAsync($"{RestUrl}/api/v1/agents"));
        return doc.RootElement.GetProperty("agents").EnumerateArray()
            .ToDictionary(a => a.GetProperty("id").GetString()!, a => a.GetProperty("status").GetString()!);
    }

    public async ValueTask DisposeAsync()
    {
        if (process is not null) await process.DisposeAsync();
    }
}

/// <summary>How a test agent differs from the default: a fixed id, a local policy, extra environment (stand-in executables on PATH).</summary>
public sealed record AgentSetup
{
    public string? AgentId { get; init; }
    public string? PolicyJson { get; init; }
    public IReadOnlyDictionary<string, string?>? Environment { get; init; }

    /// <summary>More agent.json keys (e.g. "logs").</summary>
    public IReadOnlyDictionary<string, object>? Config { get; init; }
}

/// <summary>A real agent process with its own config file and state directory.</summary>
public sealed class AgentProcess : IAsyncDisposable
{
    readonly string configPath;
    readonly AgentSetup setup;
    ChildProcess? process;

    public string StateDirectory { get; }
    public ChildProcess Process => process ?? throw new InvalidOperationException("not started");
    public string AgentId => setup.AgentId ?? File.ReadAllText(Path.Combine(StateDirectory, "agent-id")).Trim();

    AgentProcess(string directory, string coordinatorUrl, IReadOnlyDictionary<string, string> tags, AgentSetup setup)
    {
        this.setup = setup;
        StateDirectory = Path.Combine(directory, "state");
        configPath = Path.Combine(directory, "agent.json");
        var config = new Dictionary<string, object>
        {
            ["coordinator"] = coordinatorUrl,
            ["stateDirectory"] = StateDirectory,
            ["tags"] = tags,
            ["reconnectMaxSeconds"] = 2,
        };
        if (setup.AgentId is not null) config["agentId"] = setup.AgentId;
        foreach (var (key, value) in setup.Config ?? new Dictionary<string, object>()) config[key] = value;
        if (setup.PolicyJson is not null)
        {
            var policyPath = Path.Combine(directory, "policy.json");
            File.WriteAllText(policyPath, setup.PolicyJson);
            config["policyFile"] = policyPath;
        }
        File.WriteAllText(configPath, JsonSerializer.Serialize(config));
    }

    public static AgentProcess Start(string directory, string coordinatorUrl, IReadOnlyDictionary<string, string> tags, AgentSetup? setup = null)
    {
        Directory.CreateDirectory(directory);
        var agent = new AgentProcess(directory, coordinatorUrl, tags, setup ?? new AgentSetup());
        agent.Start();
        return agent;
    }

    public void Start() => process = ChildProcess.StartDotnet("agent", RepoPaths.Agent, ["--config", configPath],
        setup.Environment?.ToDictionary(kv => kv.Key, kv => kv.Value));

    /// <summary>Stops the agent (SIGTERM, then SIGKILL after the timeout) so it can be started again.</summary>
    public async Task StopAsync()
    {
        await Process.TerminateAsync();
        await Process.DisposeAsync();
        process = null;
    }

    /// <summary>kill -9: no chance to clean up.</summary>
    public async Task KillAsync()
    {
        await Process.KillAsync();
        await Process.DisposeAsync();
        process = null;
    }

    public async Task WaitForIdAsync() =>
        await Eventually.UntilAsync(() => File.Exists(Path.Combine(StateDirectory, "agent-id")) || setup.AgentId is not null, "the agent to persist its id\n" + process?.Output);

    public async ValueTask DisposeAsync()
    {
        if (process is not null) await process.DisposeAsync();
    }
}

/// <summary>Runs the real fleetctl executable.</summary>
public static class Fleetctl
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static async Task<Result> RunAsync(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(RepoPaths.Cli);
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment.Remove("FLEET_COORDINATOR");
        using var process = System.Diagnostics.Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return new Result(process.ExitCode, await stdout, await stderr);
    }
}
