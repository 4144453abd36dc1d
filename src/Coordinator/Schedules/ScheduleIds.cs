using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Fleet.Coordinator.Schedules;

/// <summary>
/// Schedule ids ("daily-health-checks") and the deterministic ids derived from an occurrence: the occurrence id and
/// each step's run id. A step's run id is a normal run id ("r-" + the fire time's 10 characters + 10 hash characters),
/// so runs still sort by time, and its invocation ids "{runId}.{agentId}" are the same on every replica and every retry:
/// the run's primary key and the agent's invocation journal both refuse a second copy.
/// </summary>
public static partial class ScheduleIds
{
    public const int MaxLength = 64;
    const string Alphabet = "0123456789abcdefghjkmnpqrstvwxyz";

    [GeneratedRegex(@"\A[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\z")]
    private static partial Regex Pattern();

    public static bool IsValid(string id) => Pattern().IsMatch(id);

    /// <summary>"Daily health checks!" → "daily-health-checks".</summary>
    public static string FromName(string name)
    {
        var builder = new StringBuilder();
        foreach (var c in name.Trim().ToLowerInvariant())
        {
            if (char.IsAsciiLetterOrDigit(c)) builder.Append(c);
            else if (builder.Length > 0 && builder[^1] != '-') builder.Append('-');
        }
        var id = builder.ToString().Trim('-');
        return id.Length > MaxLength ? id[..MaxLength].TrimEnd('-') : id;
    }

    public static string Occurrence(string scheduleId, DateTime scheduledUtc) => Derived("o-", scheduleId, scheduledUtc, "occurrence");

    public static string StepRun(string scheduleId, DateTime scheduledUtc, int step) =>
        Derived("r-", scheduleId, scheduledUtc, "step:" + step.ToString(CultureInfo.InvariantCulture));

    static string Derived(string prefix, string scheduleId, DateTime scheduledUtc, string what)
    {
        Span<char> id = stackalloc char[22];
        prefix.CopyTo(id);
        var ms = new DateTimeOffset(DateTime.SpecifyKind(scheduledUtc, DateTimeKind.Utc)).ToUnixTimeMilliseconds();
        for (var i = 11; i >= 2; i--, ms >>= 5) id[i] = Alphabet[(int)(ms & 31)];
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{scheduleId}|{scheduledUtc.Ticks.ToString(CultureInfo.InvariantCulture)}|{what}"));
        for (var i = 0; i < 10; i++) id[12 + i] = Alphabet[hash[i] & 31];
        return new string(id);
    }
}
