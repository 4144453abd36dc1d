using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using Fleet.Protocol;

namespace Fleet.Agent.Configuration;

/// <summary>A configuration problem; the message names the file and the key.</summary>
public sealed class AgentConfigException(string message) : Exception(message);

/// <summary>
/// Reads agent.json. Unknown keys, wrong types and invalid values stop the agent at start with the key's name,
/// so a typo is never silently ignored.
/// </summary>
public static partial class AgentConfigFile
{
    public static AgentOptions Load(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (FileNotFoundException) { throw new AgentConfigException($"agent config {path}: file not found (pass --config PATH or set FLEET_AGENT_CONFIG)"); }
        catch (DirectoryNotFoundException) { throw new AgentConfigException($"agent config {path}: file not found (pass --config PATH or set FLEET_AGENT_CONFIG)"); }
        catch (UnauthorizedAccessException) { throw new AgentConfigException($"agent config {path}: permission denied"); }
        return Parse(text, path);
    }

    public static AgentOptions Parse(string json, string source)
    {
        AgentConfigDocument? doc;
        try
        {
            doc = JsonSerializer.Deserialize(json, AgentConfigJsonContext.Default.AgentConfigDocument);
        }
        catch (JsonException ex)
        {
            throw new AgentConfigException($"agent config {source}: {Describe(ex)}");
        }
        if (doc is null) throw new AgentConfigException($"agent config {source}: the file must hold a JSON object");
        return Validate(doc, source);
    }

    /// <summary>An operator-readable description of a strict-parse failure (unknown key, wrong type, bad JSON). Also used for policy.json.</summary>
    internal static string Describe(JsonException ex)
    {
        // "$.tasks['logs.scan'].pathz" -> "tasks.logs.scan.pathz"
        var key = ex.Path is { Length: > 2 } p ? BracketedName().Replace(p, ".$1").TrimStart('$', '.') : null;
        var unknown = UnknownProperty().Match(ex.Message);
        if (unknown.Success)
            return $"unknown key '{(key is null ? unknown.Groups[1].Value : key)}'";
        if (ex.Message.Contains("could not be converted", StringComparison.Ordinal))
            return $"key '{key ?? "?"}' has the wrong type ({ExpectedType(ex.Message)})";
        return $"invalid JSON at line {(ex.LineNumber ?? 0) + 1}: {ex.Message.Split(" Path:")[0]}";
    }

    static string ExpectedType(string message) => message switch
    {
        _ when message.Contains("System.Int", StringComparison.Ordinal) || message.Contains("System.Double", StringComparison.Ordinal) => "expected a number",
        _ when message.Contains("System.String", StringComparison.Ordinal) => "expected a string",
        _ when message.Contains("Dictionary", StringComparison.Ordinal) => "expected an object of string values",
        _ when message.Contains("System.Boolean", StringComparison.Ordinal) => "expected true or false",
        _ => "unexpected value",
    };

    static AgentOptions Validate(AgentConfigDocument doc, string source)
    {
        string Fail(string key, string problem) => throw new AgentConfigException($"agent config {source}: key '{key}': {problem}");
        var options = new AgentOptions();

        if (doc.Coordinator is not null)
        {
            if (!Uri.TryCreate(doc.Coordinator, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps) || string.IsNullOrEmpty(uri.Host))
                Fail("coordinator", $"'{doc.Coordinator}' is not a valid URL (expected http://host:port or https://host:port)");
            else
                options.Coordinator = uri;
        }
        if (doc.AgentId is not null)
        {
            if (!AgentIds.IsValid(doc.AgentId)) Fail("agentId", AgentIds.Describe("value", doc.AgentId));
            options.AgentId = doc.AgentId;
        }
        if (doc.StateDirectory is not null)
        {
            if (doc.StateDirectory.Length == 0 || !Path.IsPathRooted(doc.StateDirectory)) Fail("stateDirectory", $"'{doc.StateDirectory}' must be an absolute path");
            options.StateDirectory = doc.StateDirectory;
        }
        if (doc.Tags is not null)
        {
            foreach (var (name, value) in doc.Tags)
            {
                if (!TagName().IsMatch(name)) Fail($"tags.{name}", "tag names are 1-64 characters of letters, digits, '_', '.', '-' or '/'");
                if (value.Length > 256) Fail($"tags.{name}", "tag values are at most 256 characters");
            }
            options.Tags = new Dictionary<string, string>(doc.Tags, StringComparer.Ordinal);
        }
        if (doc.HeartbeatSeconds is { } hb)
        {
            if (hb is < 0.1 or > 3600) Fail("heartbeatSeconds", $"{hb} is out of range (0.1 to 3600)");
            options.HeartbeatInterval = TimeSpan.FromSeconds(hb);
        }
        if (doc.ReconnectMaxSeconds is { } rm)
        {
            if (rm is < 1 or > 3600) Fail("reconnectMaxSeconds", $"{rm} is out of range (1 to 3600)");
            options.ReconnectMaxDelay = TimeSpan.FromSeconds(rm);
        }
        if (doc.OutboxMaxMegabytes is { } mb)
        {
            if (mb is < 1 or > 1024 * 1024) Fail("outboxMaxMegabytes", $"{mb} is out of range (1 to 1048576)");
            options.OutboxMaxBytes = mb * 1024L * 1024;
        }
        if (doc.MetricsFlushSeconds is { } flush)
        {
            if (flush is < 0.1 or > 3600) Fail("metricsFlushSeconds", $"{flush} is out of range (0.1 to 3600)");
            options.MetricsFlushInterval = TimeSpan.FromSeconds(flush);
        }
        if (doc.PolicyFile is not null)
        {
            if (doc.PolicyFile.Length == 0 || !Path.IsPathRooted(doc.PolicyFile)) Fail("policyFile", $"'{doc.PolicyFile}' must be an absolute path");
            options.PolicyFile = doc.PolicyFile;
        }
        if (doc.MaxConcurrentTasks is { } maxTasks)
        {
            if (maxTasks is < 1 or > 64) Fail("maxConcurrentTasks", $"{maxTasks} is out of range (1 to 64)");
            options.MaxConcurrentTasks = maxTasks;
        }
        if (doc.Collectors is not null)
        {
            options.Collectors = new(StringComparer.Ordinal);
            foreach (var (name, c) in doc.Collectors)
            {
                if (!Collectors.CollectorRegistry.Default.Names.Contains(name))
                    Fail($"collectors.{name}", $"unknown collector (known: {string.Join(", ", Collectors.CollectorRegistry.Default.Names.Order(StringComparer.Ordinal))})");
                if (c.Enabled == false) continue;
                var interval = Seconds(c.IntervalSeconds, $"collectors.{name}.intervalSeconds", 10, 0.1, 86_400, Fail);
                var timeout = Seconds(c.TimeoutSeconds, $"collectors.{name}.timeoutSeconds", Math.Min(5, interval.TotalSeconds), 0.01, 3600, Fail);
                if (name == "textfile" && string.IsNullOrWhiteSpace(c.Directory)) Fail($"collectors.{name}.directory", "a directory of *.prom files is required");
                if (name == "process" && (c.Names is null || c.Names.Length == 0)) Fail($"collectors.{name}.names", "name at least one process name or pattern, e.g. [\"node\", \"postgres\"]");
                if (name != "textfile" && c.Watch is not null) Fail($"collectors.{name}.watch", "only the textfile collector watches its source");
                options.Collectors[name] = new Collectors.CollectorSettings
                {
                    Interval = interval,
                    Timeout = timeout,
                    Processes = c.Names ?? [],
                    TextfileDirectory = c.Directory,
                    Watch = c.Watch ?? true,
                };
            }
        }
        if (doc.Probes is not null)
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < doc.Probes.Length; i++)
            {
                var p = doc.Probes[i];
                var at = $"probes[{i}]";
                if (string.IsNullOrWhiteSpace(p.Name) || !names.Add(p.Name)) Fail($"{at}.name", $"'{p.Name}' must be a non-empty name, unique among probes");
                if (p.Kind is null || !Probes.ProbeRegistry.Default.Kinds.Contains(p.Kind))
                    Fail($"{at}.kind", $"'{p.Kind}' is not a probe kind (known: {string.Join(", ", Probes.ProbeRegistry.Default.Kinds.Order(StringComparer.Ordinal))})");
                Uri? url = null;
                if (p.Url is not null && (!Uri.TryCreate(p.Url, UriKind.Absolute, out url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps)))
                    Fail($"{at}.url", $"'{p.Url}' is not an http(s) URL");
                var settings = new Probes.ProbeSettings
                {
                    Name = p.Name!,
                    Kind = p.Kind!,
                    Interval = Seconds(p.IntervalSeconds, $"{at}.intervalSeconds", 30, 1, 86_400, Fail),
                    Timeout = Seconds(p.TimeoutSeconds, $"{at}.timeoutSeconds", 5, 0.1, 600, Fail),
                    Url = url,
                    ExpectedStatus = p.ExpectedStatus,
                    BodyContains = p.BodyContains,
                    BodyMatches = p.BodyMatches,
                    FollowRedirects = p.FollowRedirects ?? false,
                    Address = p.Address,
                    ConnectionString = p.ConnectionString,
                    Username = p.Username,
                    Password = p.Password,
                    WarnDays = p.WarnDays ?? Probes.ProbeSettings.DefaultWarnDays,
                    SkipTlsVerification = p.SkipTlsVerification ?? false,
                };
                try { Release(Probes.ProbeRegistry.Default.Create(settings)); } // builds it once to check the kind's own settings
                catch (ArgumentException ex) { Fail(at, ex.Message); }
                options.Probes.Add(settings);
            }
        }
        if (doc.Logs is not null)
            options.Logs = Logs.LogConfig.Validate(doc.Logs, Fail);
        return options;
    }

    static void Release(object probe)
    {
        if (probe is IAsyncDisposable asyncDisposable) asyncDisposable.DisposeAsync().AsTask().GetAwaiter().GetResult();
        else if (probe is IDisposable disposable) disposable.Dispose();
    }

    static TimeSpan Seconds(double? value, string key, double fallback, double min, double max, Func<string, string, string> fail)
    {
        var seconds = value ?? fallback;
        if (seconds < min || seconds > max) fail(key, $"{seconds} is out of range ({min} to {max})");
        return TimeSpan.FromSeconds(seconds);
    }

    [GeneratedRegex(@"\['([^']*)'\]")]
    private static partial Regex BracketedName();

    [GeneratedRegex("'([^']+)' could not be mapped")]
    private static partial Regex UnknownProperty();

    [GeneratedRegex(@"\A[A-Za-z0-9_./-]{1,64}\z")]
    private static partial Regex TagName();
}

/// <summary>The file's shape. Every key is optional; defaults live in <see cref="AgentOptions"/>.</summary>
public sealed class AgentConfigDocument
{
    public string? Coordinator { get; set; }
    public string? AgentId { get; set; }
    public string? StateDirectory { get; set; }
    public Dictionary<string, string>? Tags { get; set; }
    public double? HeartbeatSeconds { get; set; }
    public double? ReconnectMaxSeconds { get; set; }
    public long? OutboxMaxMegabytes { get; set; }
    public double? MetricsFlushSeconds { get; set; }
    public string? PolicyFile { get; set; }
    public int? MaxConcurrentTasks { get; set; }
    public Dictionary<string, CollectorConfigDocument>? Collectors { get; set; }
    public ProbeConfigDocument[]? Probes { get; set; }
    public Logs.LogsConfigDocument? Logs { get; set; }
}

public sealed class CollectorConfigDocument
{
    public bool? Enabled { get; set; }
    public double? IntervalSeconds { get; set; }
    public double? TimeoutSeconds { get; set; }
    /// <summary>process: names or regex patterns.</summary>
    public string[]? Names { get; set; }
    /// <summary>textfile: directory of *.prom files.</summary>
    public string? Directory { get; set; }
    /// <summary>textfile: collect as soon as a *.prom file changes (inotify), not only every interval. Default true.</summary>
    public bool? Watch { get; set; }
}

public sealed class ProbeConfigDocument
{
    public string? Name { get; set; }
    public string? Kind { get; set; }
    public double? IntervalSeconds { get; set; }
    public double? TimeoutSeconds { get; set; }
    public string? Url { get; set; }
    public int? ExpectedStatus { get; set; }
    public string? BodyContains { get; set; }
    public string? BodyMatches { get; set; }
    public bool? FollowRedirects { get; set; }
    public string? Address { get; set; }
    public string? ConnectionString { get; set; }
    public string? Username { get; set; }
    public string? Password { get; set; }
    public int? WarnDays { get; set; }
    public bool? SkipTlsVerification { get; set; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true)]
[JsonSerializable(typeof(AgentConfigDocument))]
internal sealed partial class AgentConfigJsonContext : JsonSerializerContext;
