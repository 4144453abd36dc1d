using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Fleet.Protocol.V1;

namespace Fleet.Cli.Runs;

/// <summary>The command-line values of <c>fleetctl run</c> and <c>fleetctl runs</c>, checked strictly before anything is sent.</summary>
internal static class RunArguments
{
    /// <summary>"key=value"; the value may itself contain '=' (everything after the first one) and may be empty.</summary>
    public static bool TryParseParameter(string raw, out string key, out string value)
    {
        var equals = raw.IndexOf('=', StringComparison.Ordinal);
        key = equals > 0 ? raw[..equals].Trim() : "";
        value = equals > 0 ? raw[(equals + 1)..] : "";
        return key.Length > 0;
    }

    /// <summary>A <c>--target</c>: "key=value" is a tag selector, anything else a host id or hostname.</summary>
    public static (IReadOnlyList<string> Hosts, IReadOnlyList<string> Tags) SplitTargets(IEnumerable<string> targets)
    {
        var hosts = new List<string>();
        var tags = new List<string>();
        foreach (var target in targets.Select(t => t.Trim()))
        {
            if (target.Contains('=', StringComparison.Ordinal)) tags.Add(target);
            else hosts.Add(target);
        }
        return (hosts, tags);
    }

    /// <summary>"10" or "10%": a whole number, or a percentage of the run's hosts (1 to 100).</summary>
    public static bool IsCountOrPercent(string raw, int minimum)
    {
        var text = raw.Trim();
        var percent = text.EndsWith('%');
        var number = percent ? text[..^1] : text;
        if (!int.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return false;
        return percent ? n is >= 0 and <= 100 && n >= minimum : n >= minimum;
    }

    public static Option<string[]> Parameters()
    {
        var option = Strict(new Option<string[]>("--param", "-p")
        {
            Description = "A task parameter, key=value (repeatable; the value may contain '=')",
            HelpName = "key=value",
        }, "--param", raw => TryParseParameter(raw, out _, out _), "expected key=value, e.g. --param unit=nginx");
        option.Validators.Add(result =>
        {
            var keys = result.Tokens.Select(t => TryParseParameter(t.Value, out var key, out _) ? key : "").Where(k => k.Length > 0);
            foreach (var twice in keys.GroupBy(k => k, StringComparer.Ordinal).Where(g => g.Count() > 1))
            {
                result.AddError($"invalid --param values: '{twice.Key}' is given more than once");
            }
        });
        return option;
    }

    /// <summary>The parameters of valid <c>--param</c> values (the option's validators have rejected any others).</summary>
    public static Dictionary<string, string> ToParameters(IEnumerable<string> raw)
    {
        var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var value in raw)
        {
            if (TryParseParameter(value, out var key, out var parameter)) parameters[key] = parameter;
        }
        return parameters;
    }

    public static Option<string[]> Targets() => Strict(new Option<string[]>("--target", "-t")
    {
        Description = "A tag selector key=value (a host must match every one), or a host id or hostname (repeatable)",
        HelpName = "key=value|host",
    }, "--target", raw => raw.Trim().Length > 0 && !raw.TrimStart().StartsWith('='), "expected key=value or a host");

    public static Option<string[]> Hosts() => Strict(new Option<string[]>("--host")
    {
        Description = "A host id or hostname (repeatable)",
        HelpName = "host",
    }, "--host", raw => raw.Trim().Length > 0, "expected a host id or hostname");

    /// <summary>A rate-control value passed through as typed: "10" or "10%".</summary>
    public static Option<string> CountOrPercent(string name, int minimum, string description) => Strict(new Option<string>(name)
    {
        Description = description,
        HelpName = "n|n%",
    }, name, raw => IsCountOrPercent(raw, minimum), $"expected a whole number{(minimum > 0 ? $" of at least {minimum}" : "")} or a percentage such as 10%");

    /// <summary>A duration passed through as typed (the coordinator reads the same units): "10m", "90s".</summary>
    public static Option<string> Duration(string name, string description) => Strict(new Option<string>(name)
    {
        Description = description,
        HelpName = "duration",
    }, name, raw => DurationText.TryParse(raw, out var value) && value > TimeSpan.Zero, "expected a positive duration such as 90s, 10m or 1h");

    public static Option<uint> Canary() => new("--canary")
    {
        Description = "Run on this many hosts first; the rest only after all of them succeeded",
        HelpName = "n",
        CustomParser = result =>
        {
            var raw = result.Tokens[^1].Value;
            if (uint.TryParse(raw.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return n;
            result.AddError($"invalid --canary value '{raw}': expected a whole number");
            return 0;
        },
    };

    public static RunStatus? ParseStatus(string raw) => raw.Trim().ToLowerInvariant().Replace('-', '_') switch
    {
        "in_progress" or "running" => RunStatus.InProgress,
        "succeeded" => RunStatus.Succeeded,
        "failed" => RunStatus.Failed,
        "cancelled" or "canceled" => RunStatus.Cancelled,
        _ => null,
    };

    public static Argument<string> NonEmpty(Argument<string> argument, string message)
    {
        argument.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && string.IsNullOrWhiteSpace(result.Tokens[0].Value)) result.AddError(message);
        });
        return argument;
    }

    /// <summary>Adds a check that reports every bad value as "invalid NAME value 'RAW': EXPECTED" (a usage error, exit 2).</summary>
    private static Option<T> Strict<T>(Option<T> option, string name, Func<string, bool> isValid, string expected)
    {
        option.Validators.Add(result =>
        {
            foreach (var token in result.Tokens.Where(t => !isValid(t.Value)))
            {
                result.AddError($"invalid {name} value '{token.Value}': {expected}");
            }
        });
        return option;
    }
}
