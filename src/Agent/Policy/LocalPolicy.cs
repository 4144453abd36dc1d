using System.Text.Json;
using System.Text.Json.Serialization;
using Fleet.Agent.Configuration;
using Fleet.Agent.Tasks;

namespace Fleet.Agent.Policy;

/// <summary>A task, path, service or command the local policy does not allow; the message starts
/// "not permitted by local policy:".</summary>
public sealed class PolicyDeniedException(string detail) : Exception("not permitted by local policy: " + detail);

/// <summary>
/// What this host allows the coordinator to run: /etc/fleet-agent/policy.json, owned by the host's operator. Deny by
/// default: a task not listed is refused, and a missing file allows nothing. The coordinator cannot change it.
/// </summary>
public sealed class LocalPolicy
{
    public const string DefaultPath = "/etc/fleet-agent/policy.json";

    readonly Dictionary<string, TaskPolicy> tasks;

    LocalPolicy(string source, bool exists, Dictionary<string, TaskPolicy> tasks)
    {
        Source = source;
        Exists = exists;
        this.tasks = tasks;
    }

    /// <summary>Allows nothing.</summary>
    public static LocalPolicy Empty(string source) => new(source, false, new(StringComparer.Ordinal));

    /// <summary>The file it came from.</summary>
    public string Source { get; }

    /// <summary>False when there was no policy file (nothing is allowed).</summary>
    public bool Exists { get; }

    public IReadOnlyCollection<string> AllowedTasks => tasks.Keys;

    /// <summary>The task's rules, or a <see cref="PolicyDeniedException"/> when the policy does not list it.</summary>
    public TaskPolicy For(string task) =>
        tasks.TryGetValue(task, out var rule)
            ? rule
            : throw new PolicyDeniedException(Exists
                ? $"task '{task}' is not listed in {Source}"
                : $"task '{task}': there is no policy file at {Source}, so no task is allowed");

    /// <summary>Reads the policy; a missing file is <see cref="Empty"/>. Unknown keys, unknown task names and invalid
    /// values throw <see cref="AgentConfigException"/> naming the key.</summary>
    public static LocalPolicy Load(string path, IReadOnlyCollection<string> knownTasks)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException) { return Empty(path); }
        catch (UnauthorizedAccessException) { throw new AgentConfigException($"policy {path}: permission denied"); }
        return Parse(text, path, knownTasks);
    }

    public static LocalPolicy Parse(string json, string source, IReadOnlyCollection<string> knownTasks)
    {
        PolicyDocument? doc;
        try { doc = JsonSerializer.Deserialize(json, PolicyJsonContext.Default.PolicyDocument); }
        catch (JsonException ex) { throw new AgentConfigException($"policy {source}: {AgentConfigFile.Describe(ex)}"); }
        if (doc is null) throw new AgentConfigException($"policy {source}: the file must hold a JSON object");

        string Fail(string key, string problem) => throw new AgentConfigException($"policy {source}: key '{key}': {problem}");
        var tasks = new Dictionary<string, TaskPolicy>(StringComparer.Ordinal);
        foreach (var (name, rule) in doc.Tasks ?? [])
        {
            var at = $"tasks.{name}";
            if (!knownTasks.Contains(name)) Fail(at, $"unknown task (known: {string.Join(", ", knownTasks.Order(StringComparer.Ordinal))})");
            var r = rule ?? new TaskPolicyDocument();
            var globs = new List<PathGlob>();
            foreach (var p in r.Paths ?? [])
            {
                if (!PathGlob.TryCreate(p, out var glob, out var problem)) Fail($"{at}.paths", problem);
                globs.Add(glob!);
            }
            foreach (var s in r.Services ?? [])
                if (string.IsNullOrWhiteSpace(s)) Fail($"{at}.services", "a service name is empty");
            var verifyTimeout = TimeSpan.FromSeconds(30);
            if (r.VerifyTimeout is not null && (!Fleet.Protocol.Durations.TryParse(r.VerifyTimeout, out verifyTimeout) || verifyTimeout <= TimeSpan.Zero))
                Fail($"{at}.verifyTimeout", $"'{r.VerifyTimeout}' is not a positive duration (e.g. 30s, 2m)");
            var commands = new Dictionary<string, AppCommand>(StringComparer.Ordinal);
            foreach (var (commandName, c) in r.Commands ?? [])
            {
                var cat = $"{at}.commands.{commandName}";
                if (c?.Command is not { Length: > 0 } argv || string.IsNullOrWhiteSpace(argv[0])) { Fail($"{cat}.command", "an argument vector is required, e.g. [\"npm\", \"run\", \"build\"]"); continue; }
                if (c.WorkingDirectory is not null && !Path.IsPathRooted(c.WorkingDirectory)) Fail($"{cat}.workingDirectory", $"'{c.WorkingDirectory}' must be an absolute path");
                TimeSpan? timeout = null;
                if (c.Timeout is not null)
                {
                    if (!Fleet.Protocol.Durations.TryParse(c.Timeout, out var t) || t <= TimeSpan.Zero) Fail($"{cat}.timeout", $"'{c.Timeout}' is not a positive duration (e.g. 30s, 5m)");
                    timeout = t;
                }
                commands[commandName] = new AppCommand(commandName, argv, c.WorkingDirectory, timeout,
                    c.Environment is null ? null : new Dictionary<string, string>(c.Environment, StringComparer.Ordinal));
            }
            tasks[name] = new TaskPolicy(name, globs, r.Services ?? [], r.VerifyProbe, verifyTimeout, commands);
        }
        return new LocalPolicy(source, true, tasks);
    }
}

/// <summary>The rules for one allowed task.</summary>
public sealed class TaskPolicy(
    string task,
    IReadOnlyList<PathGlob> paths,
    IReadOnlyList<string> services,
    string? verifyProbe,
    TimeSpan verifyTimeout,
    IReadOnlyDictionary<string, AppCommand> commands)
{
    public string Task { get; } = task;
    public IReadOnlyList<PathGlob> Paths { get; } = paths;

    /// <summary>Service names; "*" allows any.</summary>
    public IReadOnlyList<string> Services { get; } = services;

    /// <summary>service.restart: the agent probe that must pass after the restart (else systemctl is-active).</summary>
    public string? VerifyProbe { get; } = verifyProbe;
    public TimeSpan VerifyTimeout { get; } = verifyTimeout;
    public IReadOnlyDictionary<string, AppCommand> Commands { get; } = commands;

    /// <summary>The canonical path (no "..", symlinks resolved) when it matches one of <see cref="Paths"/>.</summary>
    /// <exception cref="PolicyDeniedException">It matches none.</exception>
    public string CheckPath(string path)
    {
        var canonical = PathGlob.Canonicalize(path);
        foreach (var glob in Paths)
            if (glob.IsMatch(canonical)) return canonical;
        throw new PolicyDeniedException(canonical == path
            ? $"task '{Task}': path '{path}' is not under the allowed paths ({Describe(Paths.Select(p => p.Pattern))})"
            : $"task '{Task}': path '{path}' (resolves to '{canonical}') is not under the allowed paths ({Describe(Paths.Select(p => p.Pattern))})");
    }

    /// <exception cref="PolicyDeniedException">The service is not listed.</exception>
    public void CheckService(string service)
    {
        if (Services.Contains("*") || Services.Contains(service)) return;
        throw new PolicyDeniedException($"task '{Task}': service '{service}' is not listed (allowed: {Describe(Services)})");
    }

    /// <exception cref="PolicyDeniedException">No command of that name is declared.</exception>
    public AppCommand Command(string name) =>
        Commands.TryGetValue(name, out var command)
            ? command
            : throw new PolicyDeniedException($"task '{Task}': command '{name}' is not declared (declared: {Describe(Commands.Keys)})");

    static string Describe(IEnumerable<string> items) => items.Any() ? string.Join(", ", items) : "none";
}

/// <summary>A command the operator declared for app.command: an argument vector, never a shell string.</summary>
public sealed record AppCommand(string Name, IReadOnlyList<string> Argv, string? WorkingDirectory, TimeSpan? Timeout, IReadOnlyDictionary<string, string>? Environment);

public sealed class PolicyDocument
{
    public Dictionary<string, TaskPolicyDocument?>? Tasks { get; set; }
}

public sealed class TaskPolicyDocument
{
    public string[]? Paths { get; set; }
    public string[]? Services { get; set; }
    public string? VerifyProbe { get; set; }
    public string? VerifyTimeout { get; set; }
    public Dictionary<string, AppCommandDocument?>? Commands { get; set; }
}

public sealed class AppCommandDocument
{
    public string[]? Command { get; set; }
    public string? WorkingDirectory { get; set; }
    public string? Timeout { get; set; }
    public Dictionary<string, string>? Environment { get; set; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true)]
[JsonSerializable(typeof(PolicyDocument))]
internal sealed partial class PolicyJsonContext : JsonSerializerContext;
