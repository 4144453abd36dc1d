using System.Globalization;
using System.Net;

namespace Fleet.Bench.LoadGen;

/// <summary>Command-line options. Hand-rolled parsing: "--name value" or "--name=value".</summary>
public sealed record LoadGenOptions
{
    public const int MaxAgents = 99_999; // agent ids are sim-<runid>-NNNNN

    public Uri Coordinator { get; init; } = new("http://127.0.0.1:5081");
    public int Agents { get; init; } = 100;
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(60);
    public TimeSpan Heartbeat { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Zero = no batches.</summary>
    public TimeSpan BatchInterval { get; init; } = TimeSpan.Zero;
    /// <summary>When positive, each batch is a metric batch of this many samples instead of an event.</summary>
    public int Samples { get; init; }
    public TimeSpan ReportEvery { get; init; } = TimeSpan.FromSeconds(5);
    public string? JsonOut { get; init; }
    public double RampPerSecond { get; init; } = 500;
    public int AgentsPerConnection { get; init; } = 1;
    public string RunId { get; init; } = Convert.ToHexStringLower(BitConverter.GetBytes(Random.Shared.Next()))[..6];
    public TimeSpan WelcomeTimeout { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Unacknowledged batches kept per agent (and resent after a reconnect); older ones are dropped and counted.</summary>
    public int MaxPending { get; init; } = 256;
    /// <summary>How long the final clean close (complete request stream, wait for the server to end the call) may take.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(15);

    public const string Usage = """
        fleet-loadgen: simulates N Fleet agents, each with its own gRPC stream to a coordinator (loopback only).

        Options (durations: 500ms, 10s, 2m, 1h; a bare number means seconds):
          --coordinator URL            coordinator gRPC address              (default http://127.0.0.1:5081)
          --agents N                   simulated agents, 1..99999            (default 100)
          --duration D                 run length, ramp included             (default 60s)
          --heartbeat D                heartbeat interval                    (default 10s)
          --batch-interval D|off       send an AgentEvents batch every D     (default off)
          --samples N                  make each batch a metric batch of N samples (default 0: events)
          --report-every D             progress report interval              (default 5s)
          --json-out FILE              write the final summary as JSON
          --ramp-per-second R          new agents started per second         (default 500)
          --agents-per-connection K    agents sharing one HTTP/2 connection  (default 1)
          --run-id ID                  id used in agent ids sim-<ID>-00001   (default random)
          --welcome-timeout D          Hello -> Welcome deadline             (default 30s)
          --max-backoff D              reconnect backoff cap                 (default 30s)
          --max-pending N              unacked batches kept per agent        (default 256)
          --drain-timeout D            deadline for the final clean close    (default 15s)
          --help
        """;

    /// <summary>Parses args. Returns null and sets <paramref name="error"/> (empty for --help) when the program should not run.</summary>
    public static LoadGenOptions? Parse(IReadOnlyList<string> args, out string? error)
    {
        var o = new LoadGenOptions();
        error = null;
        try
        {
            for (var i = 0; i < args.Count; i++)
            {
                var arg = args[i];
                if (arg is "--help" or "-h" or "-?")
                {
                    error = "";
                    return null;
                }
                if (!arg.StartsWith("--", StringComparison.Ordinal))
                {
                    throw new FormatException($"unexpected argument '{arg}'");
                }
                string name, value;
                var eq = arg.IndexOf('=', StringComparison.Ordinal);
                if (eq > 0)
                {
                    name = arg[2..eq];
                    value = arg[(eq + 1)..];
                }
                else
                {
                    name = arg[2..];
                    if (i + 1 >= args.Count)
                    {
                        throw new FormatException($"--{name} needs a value");
                    }
                    value = args[++i];
                }
                o = name switch
                {
                    "coordinator" => o with { Coordinator = ParseCoordinator(value) },
                    "agents" => o with { Agents = ParseInt(name, value, 1, MaxAgents) },
                    "duration" => o with { Duration = ParsePositiveDuration(name, value) },
                    "heartbeat" => o with { Heartbeat = ParsePositiveDuration(name, value) },
                    "batch-interval" => o with { BatchInterval = value is "off" or "0" ? TimeSpan.Zero : ParsePositiveDuration(name, value) },
                    "samples" => o with { Samples = ParseInt(name, value, 0, 100_000) },
                    "report-every" => o with { ReportEvery = ParsePositiveDuration(name, value) },
                    "json-out" => o with { JsonOut = value },
                    "ramp-per-second" => o with { RampPerSecond = ParseDouble(name, value) },
                    "agents-per-connection" => o with { AgentsPerConnection = ParseInt(name, value, 1, 10_000) },
                    "run-id" => o with { RunId = ParseRunId(value) },
                    "welcome-timeout" => o with { WelcomeTimeout = ParsePositiveDuration(name, value) },
                    "max-backoff" => o with { MaxBackoff = ParsePositiveDuration(name, value) },
                    "max-pending" => o with { MaxPending = ParseInt(name, value, 1, 100_000) },
                    "drain-timeout" => o with { DrainTimeout = ParsePositiveDuration(name, value) },
                    _ => throw new FormatException($"unknown option --{name}"),
                };
            }
        }
        catch (FormatException e)
        {
            error = e.Message;
            return null;
        }
        return o;
    }

    public static TimeSpan ParseDuration(string value)
    {
        var v = value.Trim();
        (string number, double scale) = v switch
        {
            _ when v.EndsWith("ms", StringComparison.Ordinal) => (v[..^2], 0.001),
            _ when v.EndsWith('s') => (v[..^1], 1),
            _ when v.EndsWith('m') => (v[..^1], 60),
            _ when v.EndsWith('h') => (v[..^1], 3600),
            _ => (v, 1),
        };
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) || n < 0 || double.IsInfinity(n))
        {
            throw new FormatException($"'{value}' is not a duration (e.g. 500ms, 10s, 2m)");
        }
        return TimeSpan.FromSeconds(n * scale);
    }

    static TimeSpan ParsePositiveDuration(string name, string value)
    {
        var d = ParseDuration(value);
        return d > TimeSpan.Zero ? d : throw new FormatException($"--{name} must be greater than zero");
    }

    static int ParseInt(string name, string value, int min, int max) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n
            : throw new FormatException($"--{name} must be an integer in {min}..{max}");

    static double ParseDouble(string name, string value) =>
        double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) && n > 0 && !double.IsInfinity(n)
            ? n
            : throw new FormatException($"--{name} must be a number greater than zero");

    static string ParseRunId(string value) =>
        value.Length is > 0 and <= 32 && value.All(c => char.IsAsciiLetterOrDigit(c) || c == '-')
            ? value
            : throw new FormatException("--run-id must be 1..32 letters, digits or '-'");

    /// <summary>The load generator only talks to loopback: thousands of connections aimed at a remote host by mistake are a nuisance.</summary>
    static Uri ParseCoordinator(string value)
    {
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw new FormatException($"--coordinator '{value}' is not an http(s):// URL");
        }
        var host = uri.Host.Trim('[', ']');
        var loopback = host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
            || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));
        return loopback ? uri : throw new FormatException($"--coordinator must be a loopback address (127.0.0.1, [::1], localhost), not '{uri.Host}'");
    }
}
