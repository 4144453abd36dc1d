using Fleet.Agent.Configuration;

namespace Fleet.Agent;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        AgentOptions options;
        try
        {
            options = AgentConfigFile.Load(ConfigPath(args));
        }
        catch (AgentConfigException ex)
        {
            await Console.Error.WriteLineAsync($"fleet-agent: {ex.Message}");
            return 2;
        }

        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddSystemd();
        builder.Services.AddFleetAgent(options);
        try
        {
            await builder.Build().RunAsync();
            return 0;
        }
        catch (AgentConfigException ex)
        {
            await Console.Error.WriteLineAsync($"fleet-agent: {ex.Message}");
            return 2;
        }
    }

    static string ConfigPath(string[] args)
    {
        for (var i = 0; i < args.Length - 1; i++)
            if (args[i] is "--config" or "-c")
                return args[i + 1];
        return Environment.GetEnvironmentVariable("FLEET_AGENT_CONFIG") is { Length: > 0 } env ? env : AgentOptions.DefaultConfigPath;
    }
}
