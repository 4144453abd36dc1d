using System.Globalization;
using System.Text.RegularExpressions;
using Fleet.Coordinator.Hosting;
using Fleet.Protocol.V1;

namespace Fleet.Coordinator.Runs;

/// <summary>Parsing of the run request's text fields: durations ("30s", "10m", "1h30m"), limits ("10", "10%"), tag selectors.</summary>
static partial class RunSpec
{
    /// <summary>The longest delivery timeout a run may ask for.</summary>
    public static readonly TimeSpan MaxDeliveryTimeout = TimeSpan.FromDays(30);

    /// <summary>The longest execution timeout a run may ask for (a task's max_timeout, when it names one, is the cap instead).</summary>
    public static readonly TimeSpan MaxExecutionTimeout = TimeSpan.FromDays(7);

    /// <summary>A positive duration no longer than <paramref name="max"/>; null when empty.</summary>
    public static TimeSpan? Duration(string text, string field, TimeSpan max)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        if (!TryDuration(text, out var value) || value <= TimeSpan.Zero)
            throw ApiArguments.Invalid($"{field}: '{Shown(text)}' is not a positive duration such as 30s, 10m or 2h");
        if (value > max)
            throw ApiArguments.Invalid($"{field}: '{Shown(text)}' is more than the maximum of {Fleet.Protocol.Durations.Format(max)}");
        return value;
    }

    /// <summary>
    /// The run's execution timeout: the requested one (at most the task's max_timeout, else <see cref="MaxExecutionTimeout"/>),
    /// else the task's default clamped to that cap, else <paramref name="fallback"/>.
    /// </summary>
    public static TimeSpan? ExecutionTimeout(string text, TaskDescriptor task, TimeSpan? fallback = null)
    {
        var max = Clamp(task.MaxTimeout, MaxExecutionTimeout) is { } taskMax && taskMax > TimeSpan.Zero ? taskMax : MaxExecutionTimeout;
        return Duration(text, "execution_timeout", max)
            ?? (Clamp(task.DefaultTimeout, max) is { } d && d > TimeSpan.Zero ? d : fallback is { } f ? (f < max ? f : max) : null);
    }

    /// <summary>A catalog duration as a TimeSpan no longer than <paramref name="max"/> (an agent may report anything).</summary>
    static TimeSpan? Clamp(Google.Protobuf.WellKnownTypes.Duration? value, TimeSpan max)
    {
        if (value is null) return null;
        if (value.Seconds < 0 || value.Nanos < 0) return TimeSpan.Zero;
        return value.Seconds >= (long)max.TotalSeconds ? max : TimeSpan.FromSeconds(value.Seconds) + TimeSpan.FromTicks(value.Nanos / 100);
    }

    /// <summary>The shared duration syntax ("30s", "10m", "1h30m", "2d"): the agent parses task parameters the same way.</summary>
    public static bool TryDuration(string text, out TimeSpan value) => Fleet.Protocol.Durations.TryParse(text, out value);


    static string Shown(string text) => text.Length <= 40 ? text.Trim() : text.Trim()[..40] + "...";

    /// <summary>"10" or "10%" of <paramref name="total"/>; null when empty (no limit).</summary>
    public static int? Limit(string text, string field, int total, bool roundUp, int minimum)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        var m = LimitPattern().Match(text.Trim());
        if (!m.Success || !int.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            throw ApiArguments.Invalid($"{field}: '{text}' is not a count or a percentage such as 10 or 10%");
        if (m.Groups[2].Success)
        {
            if (n > 100) throw ApiArguments.Invalid($"{field}: '{text}' is more than 100%");
            var exact = total * n / 100.0;
            n = roundUp ? (int)Math.Ceiling(exact) : (int)Math.Floor(exact);
            return Math.Max(n, minimum);
        }
        if (n < minimum) throw ApiArguments.Invalid($"{field}: '{text}' must be at least {minimum}");
        return n;
    }

    public static (string Key, string Value) Tag(string selector)
    {
        var at = selector.IndexOf('=', StringComparison.Ordinal);
        if (at <= 0) throw ApiArguments.Invalid($"tags: '{selector}' is not a key=value selector");
        return (selector[..at].Trim(), selector[(at + 1)..].Trim());
    }

    /// <summary>Checks the parameters against the task's schema: names, required, types, patterns. Secret values are never echoed.</summary>
    public static void CheckParameters(TaskDescriptor task, IReadOnlyDictionary<string, string> parameters)
    {
        var schema = task.Parameters.ToDictionary(p => p.Name, StringComparer.Ordinal);
        foreach (var (name, value) in parameters)
        {
            if (!schema.TryGetValue(name, out var p))
                throw ApiArguments.Invalid($"parameters: '{name}' is not a parameter of task '{task.Name}' (known: {(schema.Count == 0 ? "none" : string.Join(", ", schema.Keys.Order(StringComparer.Ordinal)))})");
            var shown = p.Secret ? Audit.AuditLog.Redacted : value;
            var ok = p.Type switch
            {
                ParameterSchema.Types.Type.Int => long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _),
                ParameterSchema.Types.Type.Bool => value is "true" or "false",
                ParameterSchema.Types.Type.Duration => TryDuration(value, out _),
                _ => true,
            };
            if (!ok)
                throw ApiArguments.Invalid($"parameters.{name}: '{shown}' is not a valid {TypeName(p.Type)}");
            if (!string.IsNullOrEmpty(p.Pattern) && !Matches(p.Pattern, value))
                throw ApiArguments.Invalid($"parameters.{name}: '{shown}' does not match the pattern '{p.Pattern}'");
        }
        foreach (var p in task.Parameters)
            if (p.Required && string.IsNullOrEmpty(p.DefaultValue) && !parameters.ContainsKey(p.Name))
                throw ApiArguments.Invalid($"parameters.{p.Name}: required by task '{task.Name}'");
    }

    static bool Matches(string pattern, string value)
    {
        try { return Regex.IsMatch(value, $"^(?:{pattern})$", RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(100)); }
        catch (RegexMatchTimeoutException) { return false; }
        catch (ArgumentException) { return false; } // a bad pattern in the agent's catalog rejects rather than crashes
    }

    static string TypeName(ParameterSchema.Types.Type type) => type switch
    {
        ParameterSchema.Types.Type.Int => "integer",
        ParameterSchema.Types.Type.Bool => "boolean (true or false)",
        ParameterSchema.Types.Type.Duration => "duration such as 30s, 10m or 2h",
        _ => "value",
    };

    [GeneratedRegex(@"^(\d{1,9})(%)?$")]
    private static partial Regex LimitPattern();
}
