using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Fleet.Coordinator.Logs;
using Fleet.Protocol;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Fleet.Coordinator.Alerts;

/// <summary>A rule that cannot be stored or loaded; the message names the field and the value.</summary>
public sealed class RuleInvalidException(string message) : Exception(message);

public static partial class RuleNames
{
    public const int MaxLength = 100;

    public static bool IsValid(string? name) => name is { Length: > 0 and <= MaxLength } && Pattern().IsMatch(name);

    [GeneratedRegex("^[a-z0-9][a-z0-9_.-]*$")]
    private static partial Regex Pattern();
}

public static class RuleKinds
{
    public const string Threshold = "threshold", Predict = "predict", Probe = "probe", Offline = "offline", RunFailed = "run_failed",
        LogRate = "log_rate", OutboxDropped = "outbox_dropped", Watchdog = "watchdog", WindowMissed = "window_missed",
        ChecklistMissed = "checklist_missed", TlsExpiry = "tls_expiry", NotificationDead = "notification_dead";

    public static readonly string[] All = [Threshold, Predict, Probe, Offline, RunFailed, LogRate, OutboxDropped, Watchdog, WindowMissed, ChecklistMissed, TlsExpiry, NotificationDead];

    /// <summary>Evaluated as batches arrive (besides the timer).</summary>
    public static bool OnIngest(string kind) => kind is Threshold or Probe;

    /// <summary>Kinds whose alerts are about one connected host (they carry its <c>agent_id</c>): the ones a remediation can run on.</summary>
    public static readonly string[] Remediable = [Threshold, Predict, Probe, RunFailed, LogRate, OutboxDropped, TlsExpiry];
}

public static class Severities
{
    public static readonly string[] All = ["critical", "warning", "info"];
}

/// <summary>Which way a threshold condition goes for one value (hysteresis: between the clear and fire lines, keep the state).</summary>
public enum Condition { Inactive, Hold, Active }

/// <summary>A validated rule, ready to evaluate.</summary>
public sealed class CompiledRule
{
    public required long Id { get; init; }
    public required Rule Definition { get; init; }
    public string Name => Definition.Name;
    public string Kind => Definition.Kind;
    public string Severity => Definition.Severity;
    public TimeSpan For { get; init; }

    /// <summary>
    /// The least time between two remediation runs of this rule on one host (<c>remediate.min_interval</c>, default
    /// <see cref="RuleCompiler.DefaultRemediationMinInterval"/>); zero: no limit. Only meaningful with a remediation.
    /// </summary>
    public TimeSpan RemediationMinInterval => Definition.Remediate is { } r ? RuleCompiler.RemediationMinInterval(r) : TimeSpan.Zero;

    /// <summary>How long a condition holds before pending turns firing (offline rules put their duration in the condition).</summary>
    public TimeSpan PendingFor => Kind == RuleKinds.Offline ? TimeSpan.Zero : For;
    public string Metric { get; init; } = "";
    public IReadOnlyDictionary<string, string> SeriesMatchers { get; init; } = new Dictionary<string, string>();
    public string Operator { get; init; } = "";
    public double Threshold { get; init; }
    public double Clear { get; init; }
    public TimeSpan Window { get; init; }
    public TimeSpan Within { get; init; }
    public short MinLogSeverity { get; init; }
    public string ByField { get; init; } = "";

    /// <summary>window_missed: the schedule id or "*"; checklist_missed: the period kind (daily, weekly, ...) or "*".</summary>
    public string Scope { get; init; } = "*";

    /// <summary>tls_expiry: fires when a certificate has fewer than this many days left.</summary>
    public int Days { get; init; }

    public bool MatchesSeries(string name, IReadOnlyList<KeyValuePair<string, string>> labels)
    {
        if (name != Metric) return false;
        foreach (var (k, v) in SeriesMatchers)
            if (!labels.Any(l => l.Key == k && l.Value == v)) return false;
        return true;
    }

    public Condition Evaluate(double value)
    {
        bool Holds(double line) => Operator switch
        {
            ">" => value > line,
            ">=" => value >= line,
            "<" => value < line,
            _ => value <= line,
        };
        if (Holds(Threshold)) return Condition.Active;
        return Holds(Clear) ? Condition.Hold : Condition.Inactive;
    }
}

/// <summary>Parses (YAML) and validates rules: every problem names the field and the value.</summary>
public static partial class RuleCompiler
{
    static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(false));
    static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(false));

    [GeneratedRegex("""^\s*(?<metric>[A-Za-z_][A-Za-z0-9_.:-]*)\s*(?:\{(?<matchers>[^}]*)\})?\s*(?<op>>=|<=|>|<)\s*(?<value>\S+)\s*$""")]
    private static partial Regex ThresholdExpr();

    [GeneratedRegex("""^\s*(?<metric>[A-Za-z_][A-Za-z0-9_.:-]*)\s*(?:\{(?<matchers>[^}]*)\})?\s+reaches\s+(?<value>\S+)\s+within\s+(?<within>\S+)\s*$""")]
    private static partial Regex PredictExpr();

    [GeneratedRegex("""^\s*(?<key>[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"(?<value>[^"]*)"\s*$""")]
    private static partial Regex SeriesMatcher();

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]*$")]
    private static partial Regex LabelName();

    public static string ToJson(Rule rule)
    {
        var copy = rule.Clone();
        copy.Id = 0;
        copy.UpdatedAt = null;
        copy.DefaultRule = false;
        return Formatter.Format(copy);
    }

    public static Rule FromJson(string json) => Parser.Parse<Rule>(json);

    /// <summary>A rule from YAML (the field names of <see cref="Rule"/>, snake_case or camelCase).</summary>
    public static Rule FromYaml(string yaml, string source = "yaml")
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(yaml)); }
        catch (YamlException ex) { throw new RuleInvalidException($"{source}: not valid YAML at line {ex.Start.Line}: {ex.Message}"); }
        if (stream.Documents.Count != 1 || stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new RuleInvalidException($"{source}: expected one YAML mapping (name: ..., kind: ..., severity: ...)");
        var json = ToJson(root, Rule.Descriptor, source, "");
        try { return FromJson(json.ToJsonString()); }
        catch (InvalidProtocolBufferException ex) { throw new RuleInvalidException($"{source}: {ex.Message}"); }
    }

    /// <summary>A YAML mapping as the protobuf JSON of <paramref name="message"/> (nested messages such as <c>remediate</c> too).</summary>
    static JsonObject ToJson(YamlMappingNode mapping, MessageDescriptor message, string source, string prefix)
    {
        var json = new JsonObject();
        foreach (var (keyNode, valueNode) in mapping.Children)
        {
            var name = (keyNode as YamlScalarNode)?.Value ?? "";
            var key = prefix + name;
            var field = message.Fields.InDeclarationOrder().FirstOrDefault(f => f.Name == name || f.JsonName == name)
                ?? throw new RuleInvalidException($"{(prefix.Length == 0 ? source + ": " : "")}unknown field '{key}' (known: {string.Join(", ", message.Fields.InDeclarationOrder().Select(f => prefix + f.Name))})");
            if (field.IsMap)
            {
                if (valueNode is not YamlMappingNode map) throw new RuleInvalidException($"{key}: expected a mapping of name: value");
                var obj = new JsonObject();
                foreach (var (k, v) in map.Children)
                {
                    var entry = ((YamlScalarNode)k).Value ?? "";
                    obj[entry] = v is YamlScalarNode scalarValue ? scalarValue.Value ?? "" : throw new RuleInvalidException($"{key}.{entry}: expected a single value");
                }
                json[field.JsonName] = obj;
                continue;
            }
            if (field.FieldType == FieldType.Message && !field.IsRepeated && field.MessageType.File == message.File)
            {
                if (valueNode is not YamlMappingNode nested) throw new RuleInvalidException($"{key}: expected a mapping (e.g. {key}: {{ task: service.restart }})");
                json[field.JsonName] = ToJson(nested, field.MessageType, source, key + ".");
                continue;
            }
            if (valueNode is not YamlScalarNode scalar) throw new RuleInvalidException($"{key}: expected a single value");
            var text = scalar.Value ?? "";
            if (scalar.Style == ScalarStyle.Plain && (text is "" or "~" or "null")) continue;
            json[field.JsonName] = field.FieldType switch
            {
                FieldType.Bool => bool.TryParse(text, out var b) ? b : throw new RuleInvalidException($"{key}: '{text}' is not true or false"),
                FieldType.Double => double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : throw new RuleInvalidException($"{key}: '{text}' is not a number"),
                FieldType.Int32 => int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i : throw new RuleInvalidException($"{key}: '{text}' is not a whole number"),
                FieldType.Int64 => long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : throw new RuleInvalidException($"{key}: '{text}' is not a whole number"),
                _ => text,
            };
        }
        return json;
    }

    /// <summary>Checks every field the rule's kind uses and returns it ready to evaluate.</summary>
    public static CompiledRule Compile(Rule rule, long id = 0)
    {
        if (!RuleNames.IsValid(rule.Name))
            throw new RuleInvalidException($"name: '{rule.Name}' must be 1-{RuleNames.MaxLength} characters of a-z, 0-9, '_', '.', '-' starting with a letter or digit");
        if (Array.IndexOf(RuleKinds.All, rule.Kind) < 0)
            throw new RuleInvalidException($"kind: '{rule.Kind}' is not one of {string.Join(", ", RuleKinds.All)}");
        if (Array.IndexOf(Severities.All, rule.Severity) < 0)
            throw new RuleInvalidException($"severity: '{rule.Severity}' is not one of {string.Join(", ", Severities.All)}");
        if (rule.Summary.Length > 1024) throw new RuleInvalidException($"summary: {rule.Summary.Length} characters; at most 1024");
        if (rule.Runbook.Length > 0 && !(Uri.TryCreate(rule.Runbook, UriKind.Absolute, out var link) && link.Scheme is "http" or "https"))
            throw new RuleInvalidException($"runbook: '{rule.Runbook}' is not an http(s) link");
        foreach (var (k, v) in rule.Labels)
        {
            if (!LabelName().IsMatch(k)) throw new RuleInvalidException($"labels: '{k}' is not a label name ([A-Za-z_][A-Za-z0-9_]*)");
            if (v.Length > 256) throw new RuleInvalidException($"labels.{k}: {v.Length} characters; at most 256");
        }
        var forDuration = Duration(rule.For, "for", TimeSpan.Zero, allowEmpty: true);
        if (rule.Remediate is not null) CheckRemediation(rule);
        return rule.Kind switch
        {
            RuleKinds.Threshold => Threshold(rule, id, forDuration),
            RuleKinds.Predict => Predict(rule, id),
            RuleKinds.Probe => new CompiledRule
            {
                Id = id, Definition = rule, For = forDuration,
                Metric = Required(rule.Probe, "probe", "a probe name or '*'"),
            }.Also(() =>
            {
                if (rule.Failures is < 0 or > 1000) throw new RuleInvalidException($"failures: '{rule.Failures}' must be between 1 and 1000");
            }),
            RuleKinds.Offline => new CompiledRule { Id = id, Definition = rule, For = Duration(rule.For, "for", TimeSpan.FromMinutes(5), allowEmpty: true, min: TimeSpan.FromSeconds(10)) },
            RuleKinds.RunFailed => new CompiledRule
            {
                Id = id, Definition = rule, Metric = rule.Task.Length == 0 ? "*" : rule.Task,
                Within = Duration(rule.Within, "within", TimeSpan.FromDays(1), allowEmpty: true, min: TimeSpan.FromMinutes(1)),
            },
            RuleKinds.LogRate => LogRate(rule, id, forDuration),
            RuleKinds.OutboxDropped => new CompiledRule
            {
                Id = id, Definition = rule, For = forDuration,
                Within = Duration(rule.Within, "within", TimeSpan.FromMinutes(15), allowEmpty: true, min: TimeSpan.FromMinutes(1)),
            },
            RuleKinds.WindowMissed => new CompiledRule
            {
                Id = id, Definition = rule, For = forDuration, Scope = Scope(rule.Schedule, "schedule", ScheduleIdPattern(), "a schedule id (lower-case letters, digits, '-') or '*'"),
                Within = Duration(rule.Within, "within", TimeSpan.FromDays(1), allowEmpty: true, min: TimeSpan.FromMinutes(10)),
            },
            RuleKinds.ChecklistMissed => new CompiledRule
            {
                Id = id, Definition = rule, For = forDuration,
                Scope = rule.Checklist.Trim() is "" or "*" ? "*"
                    : Checklists.CalendarPeriod.TryParseKind(rule.Checklist.Trim(), out var kind) ? kind.ToString().ToLowerInvariant()
                    : throw new RuleInvalidException($"checklist: '{rule.Checklist}' is not one of daily, weekly, monthly, quarterly or '*'"),
            },
            RuleKinds.TlsExpiry => new CompiledRule
            {
                Id = id, Definition = rule, For = forDuration, Metric = rule.Probe.Trim().Length == 0 ? "*" : rule.Probe.Trim(),
                Within = Duration(rule.Within, "within", TimeSpan.FromDays(1), allowEmpty: true, min: TimeSpan.FromMinutes(10)),
                Days = !rule.HasDays ? 14 : rule.Days is >= 1 and <= 3650 ? rule.Days
                    : throw new RuleInvalidException($"days: '{rule.Days}' must be a whole number of days between 1 and 3650"),
            },
            RuleKinds.NotificationDead => new CompiledRule
            {
                Id = id, Definition = rule, For = forDuration,
                Within = Duration(rule.Within, "within", TimeSpan.FromHours(1), allowEmpty: true, min: TimeSpan.FromMinutes(1)),
            },
            _ => new CompiledRule { Id = id, Definition = rule },
        };
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex TaskName();

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
    private static partial Regex ParameterName();

    [GeneratedRegex(@"\A[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\z")]
    private static partial Regex ScheduleIdPattern();

    /// <summary>The most characters a remediation parameter value may have.</summary>
    public const int MaxParameterValue = 1024;

    static string Scope(string text, string field, Regex pattern, string what)
    {
        var value = text.Trim();
        if (value is "" or "*") return "*";
        return pattern.IsMatch(value) ? value : throw new RuleInvalidException($"{field}: '{text}' is not {what}");
    }

    /// <summary>The default <c>remediate.min_interval</c>: a flapping alert restarts a service at most every 10 minutes.</summary>
    public static readonly TimeSpan DefaultRemediationMinInterval = TimeSpan.FromMinutes(10);

    /// <summary><c>remediate.min_interval</c> as a time span (empty: the default; "0": no limit); throws naming the field and value.</summary>
    public static TimeSpan RemediationMinInterval(Remediation remediation)
    {
        var text = remediation.MinInterval.Trim();
        if (text.Length == 0) return DefaultRemediationMinInterval;
        return Durations.TryParse(text, out var value) && value <= TimeSpan.FromDays(30) ? value
            : throw new RuleInvalidException($"remediate.min_interval: '{remediation.MinInterval}' is not a duration between 0 (no limit) and 30d such as 10m, 1h, 0");
    }

    /// <summary>The remediation's shape (the task's existence, its parameter schema and the agent's policy are checked when it runs).</summary>
    static void CheckRemediation(Rule rule)
    {
        var remediation = rule.Remediate;
        if (Array.IndexOf(RuleKinds.Remediable, rule.Kind) < 0)
            throw new RuleInvalidException($"remediate: kind '{rule.Kind}' raises alerts that are not about one connected host; remediation is for {string.Join(", ", RuleKinds.Remediable)}");
        if (remediation.Task.Trim().Length == 0)
            throw new RuleInvalidException("remediate.task: a task name is required (e.g. service.restart)");
        if (!TaskName().IsMatch(remediation.Task))
            throw new RuleInvalidException($"remediate.task: '{remediation.Task}' is not a task name (letters, digits, '.', '_', '-', at most 128 characters, e.g. service.restart)");
        RemediationMinInterval(remediation);
        if (remediation.Parameters.Count > 50) throw new RuleInvalidException($"remediate.parameters: {remediation.Parameters.Count} parameters; at most 50");
        foreach (var (name, value) in remediation.Parameters)
        {
            if (!ParameterName().IsMatch(name))
                throw new RuleInvalidException($"remediate.parameters: '{name}' is not a parameter name (a letter or '_', then letters, digits, '_', '.', '-')");
            if (value.Length > MaxParameterValue)
                throw new RuleInvalidException($"remediate.parameters.{name}: {value.Length} characters; at most {MaxParameterValue}");
            if (value.Any(char.IsControl))
                throw new RuleInvalidException($"remediate.parameters.{name}: contains a control character");
        }
    }

    static CompiledRule Also(this CompiledRule rule, Action check)
    {
        check();
        return rule;
    }

    static string Required(string value, string field, string what) =>
        value.Trim().Length > 0 ? value.Trim() : throw new RuleInvalidException($"{field}: is required for kind '{what}'");

    static TimeSpan Duration(string text, string field, TimeSpan fallback, bool allowEmpty, TimeSpan? min = null)
    {
        if (text.Length == 0 && allowEmpty) return fallback;
        if (!Durations.TryParse(text, out var value) || value > TimeSpan.FromDays(365) || (min is { } m && value < m))
            throw new RuleInvalidException($"{field}: '{text}' is not a duration such as 30s, 5m, 2h, 1d{(min is { } mm ? $" (at least {Durations.Format(mm)})" : "")}");
        return value;
    }

    static double Number(string text, string field) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v)
            ? v : throw new RuleInvalidException($"{field}: '{text}' is not a number");

    static Dictionary<string, string> Matchers(Group group, string field)
    {
        var result = new Dictionary<string, string>();
        if (!group.Success || group.Value.Trim().Length == 0) return result;
        foreach (var part in group.Value.Split(','))
        {
            var m = SeriesMatcher().Match(part);
            if (!m.Success) throw new RuleInvalidException($"{field}: '{part.Trim()}' is not a series label matcher such as mount=\"/\"");
            result[m.Groups["key"].Value] = m.Groups["value"].Value;
        }
        return result;
    }

    static CompiledRule Threshold(Rule rule, long id, TimeSpan forDuration)
    {
        var m = ThresholdExpr().Match(rule.Expr);
        if (!m.Success)
            throw new RuleInvalidException($"expr: '{rule.Expr}' is not 'METRIC OP NUMBER' such as 'disk.used_ratio > 0.80' (operators: > >= < <=; metric names: letters, digits, '_', '.', ':', '-')");
        var metric = m.Groups["metric"].Value;
        if (metric.Length > 200) throw new RuleInvalidException($"expr: metric name '{metric}' is longer than 200 characters");
        if (!double.TryParse(m.Groups["value"].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var threshold) || !double.IsFinite(threshold))
            throw new RuleInvalidException($"expr: '{rule.Expr}': '{m.Groups["value"].Value}' is not a number");
        var op = m.Groups["op"].Value;
        var clear = rule.HasClear ? rule.Clear : threshold;
        if (!double.IsFinite(clear)) throw new RuleInvalidException($"clear: '{rule.Clear}' is not a number");
        var upward = op is ">" or ">=";
        if (upward ? clear > threshold : clear < threshold)
            throw new RuleInvalidException($"clear: '{clear.ToString(CultureInfo.InvariantCulture)}' must be {(upward ? "at most" : "at least")} the threshold {threshold.ToString(CultureInfo.InvariantCulture)} of expr '{rule.Expr}'");
        return new CompiledRule
        {
            Id = id, Definition = rule, For = forDuration, Metric = metric, SeriesMatchers = Matchers(m.Groups["matchers"], "expr"),
            Operator = op, Threshold = threshold, Clear = clear,
        };
    }

    static CompiledRule Predict(Rule rule, long id)
    {
        var m = PredictExpr().Match(rule.Predict);
        if (!m.Success)
            throw new RuleInvalidException($"predict: '{rule.Predict}' is not 'METRIC reaches NUMBER within DURATION' such as 'disk.used_ratio reaches 1.0 within 24h'");
        return new CompiledRule
        {
            Id = id, Definition = rule, Metric = m.Groups["metric"].Value, SeriesMatchers = Matchers(m.Groups["matchers"], "predict"),
            Operator = ">=", Threshold = Number(m.Groups["value"].Value, $"predict: '{rule.Predict}'"),
            Within = Duration(m.Groups["within"].Value, "predict", TimeSpan.Zero, allowEmpty: false, min: TimeSpan.FromMinutes(1)),
            Window = Duration(rule.Window, "window", TimeSpan.FromHours(6), allowEmpty: true, min: TimeSpan.FromMinutes(10)),
        };
    }

    static CompiledRule LogRate(Rule rule, long id, TimeSpan forDuration)
    {
        short level = 0;
        if (rule.LogSeverity.Length > 0 && !LogSeverity.TryParse(rule.LogSeverity, out level))
            throw new RuleInvalidException($"log_severity: '{rule.LogSeverity}' is not one of {LogSeverity.Names}");
        if (level == 0 && rule.Query.Trim().Length == 0)
            throw new RuleInvalidException("log_severity, query: a log_rate rule needs at least one of them");
        if (rule.Query.Length > LogFilter.MaxQuery) throw new RuleInvalidException($"query: {rule.Query.Length} characters; at most {LogFilter.MaxQuery}");
        if (rule.MoreThan < 0) throw new RuleInvalidException($"more_than: '{rule.MoreThan}' must be 0 or more");
        var by = rule.By.Trim();
        if (by.Length > 0 && !(by is "host" or "source" || (by.StartsWith("fields.", StringComparison.Ordinal) && by.Length > 7)))
            throw new RuleInvalidException($"by: '{rule.By}' is not 'host', 'source' or 'fields.NAME'");
        return new CompiledRule
        {
            Id = id, Definition = rule, For = forDuration, MinLogSeverity = level, ByField = by,
            Within = Duration(rule.Within, "within", TimeSpan.FromMinutes(5), allowEmpty: true, min: TimeSpan.FromSeconds(10)),
        };
    }
}
