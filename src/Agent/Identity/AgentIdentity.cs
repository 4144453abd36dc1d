using Fleet.Agent.Configuration;
using Fleet.Protocol;

namespace Fleet.Agent.Identity;

/// <summary>Who this agent is and what host it runs on. The id is generated once and kept in the state directory.</summary>
public sealed class AgentIdentity
{
    public required string AgentId { get; init; }
    public required string Hostname { get; init; }
    public required string MachineId { get; init; }
    public required string Os { get; init; }
    public required string Kernel { get; init; }
    public required string Version { get; init; }

    public static AgentIdentity Load(AgentOptions options)
    {
        Directory.CreateDirectory(options.StateDirectory);
        return new AgentIdentity
        {
            AgentId = options.AgentId ?? LoadOrCreateId(Path.Combine(options.StateDirectory, "agent-id")),
            Hostname = Environment.MachineName.ToLowerInvariant(),
            MachineId = FirstLine("/etc/machine-id") ?? FirstLine("/var/lib/dbus/machine-id") ?? "",
            Os = OsPrettyName() ?? Environment.OSVersion.VersionString,
            Kernel = FirstLine("/proc/sys/kernel/osrelease") ?? "",
            Version = typeof(AgentIdentity).Assembly.GetName().Version?.ToString(3) ?? "0.0.0",
        };
    }

    static string LoadOrCreateId(string path)
    {
        if (File.Exists(path))
        {
            var stored = File.ReadAllText(path).Trim();
            if (!AgentIds.IsValid(stored))
                throw new AgentConfigException($"agent id file {path}: {AgentIds.Describe("content", stored)}; fix or delete the file");
            return stored;
        }
        var id = Guid.NewGuid().ToString("N");
        var temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(id);
            writer.Flush();
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        return id;
    }

    static string? FirstLine(string path)
    {
        try { return File.Exists(path) ? File.ReadLines(path).FirstOrDefault()?.Trim() : null; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    static string? OsPrettyName()
    {
        try
        {
            if (!File.Exists("/etc/os-release")) return null;
            foreach (var line in File.ReadLines("/etc/os-release"))
                if (line.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))
                    return line["PRETTY_NAME=".Length..].Trim('"');
        }
        catch (IOException) { }
        return null;
    }
}
