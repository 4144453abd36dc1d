using System.Globalization;
using System.Text.RegularExpressions;
using Fleet.Protocol.V1;
using ParamType = Fleet.Protocol.V1.ParameterSchema.Types.Type;

namespace Fleet.Agent.Tasks;

/// <summary>A parameter that is unknown, missing, of the wrong type or not matching its pattern. The message names
/// the field and (unless secret) the value, e.g. "parameter 'lines': 'abc' is not an integer".</summary>
public sealed class TaskParameterException(string field, string problem) : Exception($"parameter '{field}': {problem}")
{
    public string Field { get; } = field;
}

/// <summary>A dispatch's parameters after validation against the task's schema, defaults applied.</summary>
public sealed class TaskParameters
{
    readonly Dictionary<string, string> values;

    TaskParameters(Dictionary<string, string> values, IReadOnlyList<string> secrets)
    {
        this.values = values;
        SecretValues = secrets;
    }

    /// <summary>Values of parameters marked secret: masked in everything that leaves the host.</summary>
    public IReadOnlyList<string> SecretValues { get; }

    public string? String(string name) => values.TryGetValue(name, out var v) ? v : null;

    /// <summary>An int parameter (validated as 64-bit, as the coordinator does).</summary>
    public long? Long(string name) => values.TryGetValue(name, out var v) ? long.Parse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) : null;

    /// <summary>An int parameter the task needs as 32-bit.</summary>
    /// <exception cref="TaskParameterException">The value is outside the 32-bit range.</exception>
    public int? Int(string name) => Long(name) switch
    {
        null => null,
        >= int.MinValue and <= int.MaxValue and var v => (int)v,
        var v => throw new TaskParameterException(name, $"{v} is out of range ({int.MinValue} to {int.MaxValue})"),
    };

    public bool? Bool(string name) => values.TryGetValue(name, out var v) ? ParseBool(v) : null;

    public TimeSpan? Duration(string name) => values.TryGetValue(name, out var v) && Fleet.Protocol.Durations.TryParse(v, out var d) ? d : null;

    /// <summary>Checks <paramref name="given"/> against <paramref name="descriptor"/>.</summary>
    /// <exception cref="TaskParameterException">The first problem found.</exception>
    public static TaskParameters Validate(TaskDescriptor descriptor, IReadOnlyDictionary<string, string> given)
    {
        var schema = descriptor.Parameters.ToDictionary(p => p.Name, StringComparer.Ordinal);
        foreach (var name in given.Keys.Order(StringComparer.Ordinal))
        {
            if (!schema.ContainsKey(name))
                throw new TaskParameterException(name, $"not a parameter of task '{descriptor.Name}' (parameters: {(schema.Count == 0 ? "none" : string.Join(", ", schema.Keys))})");
        }
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var secrets = new List<string>();
        foreach (var p in descriptor.Parameters)
        {
            if (!given.TryGetValue(p.Name, out var value) || value.Length == 0)
            {
                if (p.Required) throw new TaskParameterException(p.Name, $"required by task '{descriptor.Name}'");
                if (p.DefaultValue.Length == 0) continue;
                value = p.DefaultValue;
            }
            var shown = p.Secret ? "***" : value;
            var problem = p.Type switch
            {
                ParamType.Int => long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _) ? null : $"'{shown}' is not an integer",
                ParamType.Bool => ParseBool(value) is null ? $"'{shown}' is not true or false" : null,
                ParamType.Duration => Fleet.Protocol.Durations.TryParse(value, out var d) && d >= TimeSpan.Zero ? null : $"'{shown}' is not a duration (e.g. 30s, 5m, 1h)",
                ParamType.Path => Path.IsPathRooted(value) && !value.Contains('\0', StringComparison.Ordinal) ? null : $"'{shown}' is not an absolute path",
                _ => value.Contains('\0', StringComparison.Ordinal) ? $"'{shown}' contains a NUL character" : null,
            };
            if (problem is null && p.Pattern.Length > 0 && !Regex.IsMatch(value, p.Pattern, RegexOptions.CultureInvariant | RegexOptions.NonBacktracking, TimeSpan.FromSeconds(1)))
                problem = $"'{shown}' does not match the pattern {p.Pattern}";
            if (problem is not null) throw new TaskParameterException(p.Name, problem);
            values[p.Name] = value;
            if (p.Secret) secrets.Add(value);
        }
        return new TaskParameters(values, secrets);
    }

    /// <summary>The given values of secret parameters, even when validation fails (to mask them in errors).</summary>
    public static IReadOnlyList<string> SecretsOf(TaskDescriptor? descriptor, IReadOnlyDictionary<string, string> given) =>
        descriptor is null ? [] : [.. descriptor.Parameters.Where(p => p.Secret && given.TryGetValue(p.Name, out var v) && v.Length > 0).Select(p => given[p.Name])];

    static bool? ParseBool(string value) => value.ToLowerInvariant() switch
    {
        "true" or "1" or "yes" => true,
        "false" or "0" or "no" => false,
        _ => null,
    };
}

/// <summary>Builds task descriptors.</summary>
public static class TaskSchema
{
    public static TaskDescriptor Describe(string name, string description, bool destructive, TimeSpan defaultTimeout, TimeSpan maxTimeout, params ParameterSchema[] parameters) =>
        new()
        {
            Name = name,
            Description = description,
            Destructive = destructive,
            DefaultTimeout = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(defaultTimeout),
            MaxTimeout = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(maxTimeout),
            Parameters = { parameters },
        };

    public static ParameterSchema Parameter(string name, ParamType type, string description, bool required = false, string? defaultValue = null, string? pattern = null, bool secret = false) =>
        new()
        {
            Name = name,
            Type = type,
            Description = description,
            Required = required,
            DefaultValue = defaultValue ?? "",
            Pattern = pattern ?? "",
            Secret = secret,
        };

    // Patterns are anchored with \A and \z: in .NET "$" also matches before a final "\n", so "nginx\n" would pass.

    /// <summary>Service unit names: letters, digits and @ . _ : - (never an option or a path).</summary>
    public const string ServicePattern = @"\A[A-Za-z0-9][A-Za-z0-9@._:-]{0,254}\z";
}
