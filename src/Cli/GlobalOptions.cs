using System.CommandLine;
using System.Globalization;
using System.CommandLine.Parsing;

namespace Fleet.Cli;

/// <summary>Options accepted by every command: where the coordinator is, who is asking, how long to wait.</summary>
internal sealed class GlobalOptions
{
    public const string CoordinatorVariable = "FLEET_COORDINATOR";
    public const string UserVariable = "FLEET_USER";
    public static readonly Uri DefaultCoordinator = new("http://127.0.0.1:5081");
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    public GlobalOptions(CliEnvironment environment)
    {
        Coordinator = new Option<Uri>("--coordinator")
        {
            Description = $"Coordinator gRPC address [env: {CoordinatorVariable}]",
            HelpName = "url",
            Recursive = true,
            CustomParser = result => ParseCoordinator(result, result.Tokens[^1].Value, "--coordinator value '{0}'"),
            DefaultValueFactory = result => environment.GetEnvironmentVariable(CoordinatorVariable) is { Length: > 0 } fromEnvironment
                ? ParseCoordinator(result, fromEnvironment, $"{CoordinatorVariable} value '{{0}}' (used for --coordinator)")
                : DefaultCoordinator,
        };

        User = new Option<string>("--user")
        {
            Description = $"Operator name sent with every call as x-fleet-user [env: {UserVariable}; else the OS user]",
            HelpName = "name",
            Recursive = true,
            CustomParser = result => ParseUser(result, result.Tokens[^1].Value, "--user value '{0}'"),
            DefaultValueFactory = result => environment.GetEnvironmentVariable(UserVariable) is { Length: > 0 } fromEnvironment
                ? ParseUser(result, fromEnvironment, $"{UserVariable} value '{{0}}' (used for --user)")
                : ParseUser(result, environment.OsUserName(), $"OS user name '{{0}}' (the default for --user; pass --user or set {UserVariable})"),
        };

        // No DefaultValueFactory: help would print the TimeSpan as 00:00:10. Absent means DefaultTimeout (see TimeoutOf).
        Timeout = new Option<TimeSpan?>("--timeout")
        {
            Description = $"Deadline for each call, e.g. 500ms, 10s, 2m [default: {DurationText.Format(DefaultTimeout)}]",
            HelpName = "duration",
            Recursive = true,
            CustomParser = ParseTimeout,
        };
    }

    public Option<Uri> Coordinator { get; }

    public Option<string> User { get; }

    public Option<TimeSpan?> Timeout { get; }

    public TimeSpan TimeoutOf(ParseResult parse) => parse.GetValue(Timeout) ?? DefaultTimeout;

    public void AddTo(RootCommand root)
    {
        root.Add(Coordinator);
        root.Add(User);
        root.Add(Timeout);
    }

    // what: a composite format naming the source, e.g. "--coordinator value '{0}'".
    private static Uri ParseCoordinator(ArgumentResult result, string raw, string what)
    {
        if (TryParseCoordinator(raw, out var uri, out var problem)) return uri;
        result.AddError($"invalid {string.Format(CultureInfo.InvariantCulture, what, raw)}: {problem}");
        return DefaultCoordinator;
    }

    internal static bool TryParseCoordinator(string raw, out Uri uri, out string problem)
    {
        uri = DefaultCoordinator;
        if (!Uri.TryCreate(raw.Trim(), UriKind.Absolute, out var parsed)
            || (parsed.Scheme != Uri.UriSchemeHttp && parsed.Scheme != Uri.UriSchemeHttps)
            || string.IsNullOrEmpty(parsed.Host))
        {
            problem = "expected an http:// or https:// URL such as http://127.0.0.1:5081";
            return false;
        }
        if (!string.IsNullOrEmpty(parsed.Query) || !string.IsNullOrEmpty(parsed.Fragment) || !string.IsNullOrEmpty(parsed.UserInfo))
        {
            problem = "the URL must not carry credentials, a query or a fragment";
            return false;
        }
        uri = parsed;
        problem = "";
        return true;
    }

    private static string ParseUser(ArgumentResult result, string raw, string what)
    {
        var user = raw.Trim();
        // gRPC metadata values are HTTP/2 header values: printable ASCII only.
        if (user.Length == 0 || user.Any(c => c < 0x20 || c > 0x7E))
        {
            result.AddError($"invalid {string.Format(CultureInfo.InvariantCulture, what, raw)}: expected a non-empty name of printable ASCII characters");
        }
        return user;
    }

    private static TimeSpan? ParseTimeout(ArgumentResult result)
    {
        var raw = result.Tokens[^1].Value;
        if (DurationText.TryParse(raw, out var value) && value > TimeSpan.Zero) return value;
        result.AddError($"invalid --timeout value '{raw}': expected a positive duration such as 500ms, 10s or 2m");
        return DefaultTimeout;
    }
}
