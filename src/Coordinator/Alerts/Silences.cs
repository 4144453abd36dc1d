using System.Text.Json;
using System.Text.RegularExpressions;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Alerts;

/// <summary>Whether an alert's labels are silenced at a time: what the notification fan-out asks before sending.</summary>
public interface ISilences
{
    Task<bool> IsSilencedAsync(IReadOnlyDictionary<string, string> labels, DateTime at, CancellationToken cancellationToken = default);
}

/// <summary>One silence matcher: <c>name=value</c>, <c>name!=value</c> or <c>name=~regex</c> (the whole value must match).</summary>
public sealed partial record SilenceMatcher(string Name, string Operator, string Value)
{
    public const int MaxLength = 512;
    Regex? regex;

    [GeneratedRegex(@"^\s*(?<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?<op>=~|!=|=)\s*(?<value>.*?)\s*$")]
    private static partial Regex Pattern();

    /// <summary>Parses "host=web-1"; a bad matcher is an <see cref="ArgumentException"/> naming the field and the text.</summary>
    public static SilenceMatcher Parse(string text, string field = "matchers")
    {
        if (text.Length > MaxLength) throw new ArgumentException($"{field}: '{text[..40]}…' is longer than {MaxLength} characters");
        var m = Pattern().Match(text);
        if (!m.Success)
            throw new ArgumentException($"{field}: '{text}' is not a matcher such as host=web-1, mount!=/boot or alertname=~disk.* (label names: letters, digits, '_')");
        var value = m.Groups["value"].Value;
        if (value.Length >= 2 && value[0] == '"' && value[^1] == '"') value = value[1..^1];
        var matcher = new SilenceMatcher(m.Groups["name"].Value, m.Groups["op"].Value, value);
        if (matcher.Operator == "=~")
        {
            try { matcher.regex = new Regex("^(?:" + value + ")$", RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(100)); }
            catch (ArgumentException ex) { throw new ArgumentException($"{field}: '{text}': the regular expression is not valid ({ex.Message})"); }
        }
        return matcher;
    }

    public bool Matches(IReadOnlyDictionary<string, string> labels)
    {
        var actual = labels.TryGetValue(Name, out var v) ? v : "";
        return Operator switch
        {
            "=" => actual == Value,
            "!=" => actual != Value,
            _ => SafeRegexMatch(actual),
        };
    }

    bool SafeRegexMatch(string actual)
    {
        try { return regex!.IsMatch(actual); }
        catch (RegexMatchTimeoutException) { return false; }
    }

    public override string ToString() => Name + Operator + Value;
}

/// <summary>Silences from the database (the table is small: active and recent silences).</summary>
public sealed class SilenceStore(IDbContextFactory<FleetDbContext> dbFactory) : ISilences
{
    public static IReadOnlyList<SilenceMatcher> Matchers(SilenceRecord record) =>
        (JsonSerializer.Deserialize<List<string>>(record.MatchersJson) ?? []).Select(m => SilenceMatcher.Parse(m)).ToList();

    public static bool Matches(SilenceRecord silence, IReadOnlyDictionary<string, string> labels, DateTime at) =>
        silence.StartsAt <= at && at < silence.EndsAt && Matchers(silence).All(m => m.Matches(labels));

    public async Task<bool> IsSilencedAsync(IReadOnlyDictionary<string, string> labels, DateTime at, CancellationToken cancellationToken = default)
    {
        await using var db = dbFactory.CreateDbContext();
        var silences = await db.Set<SilenceRecord>().AsNoTracking().Where(s => s.StartsAt <= at && s.EndsAt > at).ToListAsync(cancellationToken);
        return silences.Any(s => Matches(s, labels, at));
    }

    /// <summary>
    /// The silence or open maintenance window that covers an alert with these labels at <paramref name="at"/>, as a reason;
    /// or null. One answer for the notification router, the send-time check and remediation.
    /// </summary>
    public static string? HeldBackBy(IReadOnlyDictionary<string, string> labels, IReadOnlyList<SilenceRecord> silences, IReadOnlyList<Schedules.OpenWindowInfo> windows, DateTime at)
    {
        if (silences.FirstOrDefault(x => Matches(x, labels, at)) is { } silence)
            return $"silenced by {silence.Id} until {silence.EndsAt:O} ({silence.Comment})";
        if (labels.TryGetValue("agent_id", out var agent) && windows.FirstOrDefault(w => w.Hosts.Contains(agent, StringComparer.Ordinal)) is { } window)
            return $"maintenance window {window.ScheduleId} (occurrence {window.OccurrenceId}) until {window.EndsUtc:O}";
        return null;
    }

    /// <summary>The silences in force at <paramref name="at"/>, for marking many alerts at once.</summary>
    public async Task<List<SilenceRecord>> ActiveAsync(DateTime at, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        return await db.Set<SilenceRecord>().AsNoTracking().Where(s => s.StartsAt <= at && s.EndsAt > at).ToListAsync(cancellationToken);
    }
}
