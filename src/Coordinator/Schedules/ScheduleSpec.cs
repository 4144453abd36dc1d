using System.Text.Json;
using System.Text.Json.Serialization;
using Cronos;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Runs;
using Fleet.Protocol;
using Fleet.Protocol.V1;

namespace Fleet.Coordinator.Schedules;

public enum OnClose { Cancel, Finish }

public enum MisfirePolicy { Skip, RunOnce }

public enum OverlapPolicy { Alongside, Wait, Skip }

/// <summary>One step of a window: a task with its parameters and rate control, and whether a failure stops the later steps.</summary>
public sealed record StepSpec(string Name, string Task, Dictionary<string, string> Parameters, bool StopOnFailure,
    string MaxConcurrency, string MaxErrors, string ExecutionTimeout);

/// <summary>A validated schedule definition (what <see cref="ScheduleRecord.SpecJson"/> and <see cref="OccurrenceRecord.SpecJson"/> hold).</summary>
public sealed record ScheduleSpec(
    string Id, string Name, string Description, string Cron, string TimeZone, TimeSpan Duration, TimeSpan Cutoff,
    OnClose OnClose, List<string> Hosts, List<string> Tags, List<StepSpec> Steps, MisfirePolicy Misfire, OverlapPolicy Overlap)
{
    public const string AllHosts = "*";
    public const int MaxSteps = 50;
    static readonly TimeSpan MaxDuration = TimeSpan.FromDays(7);
    static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    CronExpression? expression;
    TimeZoneInfo? zone;

    [JsonIgnore]
    public CronExpression Expression => expression ??= CronExpression.Parse(Cron, CronFormat.Standard);

    [JsonIgnore]
    public TimeZoneInfo Zone => zone ??= TimeZoneInfo.FindSystemTimeZoneById(TimeZone);

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static ScheduleSpec FromJson(string json) => JsonSerializer.Deserialize<ScheduleSpec>(json, Json) ?? throw new InvalidOperationException("empty schedule spec");

    /// <summary>The fire times in (<paramref name="after"/>, <paramref name="until"/>], UTC (Cronos: a skipped local time fires once at the next valid instant, a repeated one once).</summary>
    public IEnumerable<DateTime> Fires(DateTime after, DateTime until) =>
        Expression.GetOccurrences(after, until, Zone, fromInclusive: false, toInclusive: true);

    public DateTime? NextFire(DateTime after) => Expression.GetNextOccurrence(after, Zone);

    /// <summary>Validates an API/YAML schedule; every error is InvalidArgument naming the field as JSON and YAML spell it.</summary>
    public static ScheduleSpec FromMessage(Schedule message, string? id = null)
    {
        var name = message.Name.Trim();
        if (name.Length == 0) throw ApiArguments.Invalid("name: a name is required");
        if (name.Length > 256) throw ApiArguments.Invalid("name: at most 256 characters");
        id ??= message.Id.Trim().Length > 0 ? message.Id.Trim() : ScheduleIds.FromName(name);
        if (!ScheduleIds.IsValid(id))
            throw ApiArguments.Invalid($"id: '{id}' is not a valid schedule id (lower-case letters, digits and '-', at most {ScheduleIds.MaxLength})");

        var cron = string.Join(' ', message.Cron.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        if (cron.Length == 0) throw ApiArguments.Invalid("cron: a cron expression is required (5 fields, e.g. \"0 6 * * *\")");
        try { CronExpression.Parse(cron, CronFormat.Standard); }
        catch (CronFormatException ex) { throw ApiArguments.Invalid($"cron: '{cron}' is not a valid cron expression: {ex.Message}"); }

        var timeZone = message.TimeZone.Trim().Length == 0 ? "UTC" : message.TimeZone.Trim();
        try { TimeZoneInfo.FindSystemTimeZoneById(timeZone); }
        catch (Exception ex) when (ex is TimeZoneNotFoundException or InvalidTimeZoneException)
        {
            throw ApiArguments.Invalid($"timeZone: '{timeZone}' is not a known time zone (use an IANA name such as Europe/Berlin)");
        }

        if (!Durations.TryParse(message.Duration, out var duration) || duration <= TimeSpan.Zero || duration > MaxDuration)
            throw ApiArguments.Invalid($"duration: '{message.Duration}' is not a valid window length (e.g. 15m, 2h; more than 0, at most 7d)");
        var cutoff = TimeSpan.Zero;
        if (message.Cutoff.Trim().Length > 0 && (!Durations.TryParse(message.Cutoff, out cutoff) || cutoff >= duration))
            throw ApiArguments.Invalid($"cutoff: '{message.Cutoff}' is not a valid cutoff (a duration shorter than the window's {Durations.Format(duration)})");

        var onClose = message.OnClose.Trim().ToLowerInvariant() switch
        {
            "" or "cancel" => OnClose.Cancel,
            "finish" => OnClose.Finish,
            _ => throw ApiArguments.Invalid($"onClose: '{message.OnClose}' must be cancel or finish"),
        };
        var misfire = message.Misfire.Trim().ToLowerInvariant() switch
        {
            "" or "skip" => MisfirePolicy.Skip,
            "run-once" or "run-once-if-inside-window" => MisfirePolicy.RunOnce,
            _ => throw ApiArguments.Invalid($"misfire: '{message.Misfire}' must be skip or run-once"),
        };
        var overlap = message.Overlap.Trim().ToLowerInvariant() switch
        {
            "" or "alongside" => OverlapPolicy.Alongside,
            "wait" => OverlapPolicy.Wait,
            "skip" => OverlapPolicy.Skip,
            _ => throw ApiArguments.Invalid($"overlap: '{message.Overlap}' must be alongside, wait or skip"),
        };

        var hosts = message.Hosts.Select(h => h.Trim()).Where(h => h.Length > 0).Distinct(StringComparer.Ordinal).ToList();
        foreach (var (host, index) in hosts.Select((h, i) => (h, i)))
            if (host != AllHosts && !AgentIds.IsValid(host) && Uri.CheckHostName(host) == UriHostNameType.Unknown)
                throw ApiArguments.Invalid($"hosts[{index}]: '{host}' is not an agent id, a hostname or \"*\"");
        var tags = message.Tags.Select(t => t.Trim()).Where(t => t.Length > 0).Distinct(StringComparer.Ordinal).ToList();
        for (var i = 0; i < tags.Count; i++)
        {
            try { RunSpec.Tag(tags[i]); }
            catch (Grpc.Core.RpcException ex) { throw ApiArguments.Invalid($"tags[{i}]: {ex.Status.Detail}"); }
        }
        if (hosts.Count == 0 && tags.Count == 0)
            throw ApiArguments.Invalid("hosts: name the targets: hosts (agent ids, hostnames, or \"*\" for every host) and/or tags (key=value)");

        if (message.Steps.Count == 0) throw ApiArguments.Invalid("steps: a window needs at least one step");
        if (message.Steps.Count > MaxSteps) throw ApiArguments.Invalid($"steps: at most {MaxSteps} steps");
        var steps = message.Steps.Select((s, i) => Step(s, $"steps[{i}]")).ToList();
        return new ScheduleSpec(id, name, message.Description.Trim(), cron, timeZone, duration, cutoff, onClose, hosts, tags, steps, misfire, overlap);
    }

    static StepSpec Step(ScheduleStep step, string field)
    {
        var task = step.Task.Trim();
        if (task.Length == 0) throw ApiArguments.Invalid($"{field}.task: a task name is required");
        if (task.Length > 128 || !task.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
            throw ApiArguments.Invalid($"{field}.task: '{task}' is not a valid task name");
        var stop = step.OnFailure.Trim().ToLowerInvariant() switch
        {
            "" or "stop" => true,
            "continue" => false,
            _ => throw ApiArguments.Invalid($"{field}.onFailure: '{step.OnFailure}' must be stop or continue"),
        };
        foreach (var (value, name) in new[] { (step.MaxConcurrency, "maxConcurrency"), (step.MaxErrors, "maxErrors") })
        {
            var text = value.Trim().TrimEnd('%');
            if (text.Length > 0 && (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) || (value.Trim().EndsWith('%') && n > 100)))
                throw ApiArguments.Invalid($"{field}.{name}: '{value}' must be a number or a percentage (\"10\", \"25%\")");
        }
        if (step.ExecutionTimeout.Trim().Length > 0 && (!Durations.TryParse(step.ExecutionTimeout, out var timeout) || timeout <= TimeSpan.Zero))
            throw ApiArguments.Invalid($"{field}.executionTimeout: '{step.ExecutionTimeout}' is not a valid duration");
        foreach (var key in step.Parameters.Keys)
            if (key.Trim().Length == 0) throw ApiArguments.Invalid($"{field}.parameters: an empty parameter name");
        return new StepSpec(step.Name.Trim(), task, step.Parameters.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal), stop,
            step.MaxConcurrency.Trim(), step.MaxErrors.Trim(), step.ExecutionTimeout.Trim());
    }

    /// <summary>The definition as the API shows it (output fields are filled by the caller).</summary>
    public Schedule ToMessage()
    {
        var message = new Schedule
        {
            Id = Id, Name = Name, Description = Description, Cron = Cron, TimeZone = TimeZone,
            Duration = Durations.Format(Duration), Cutoff = Cutoff == TimeSpan.Zero ? "" : Durations.Format(Cutoff),
            OnClose = OnClose == OnClose.Cancel ? "cancel" : "finish",
            Misfire = Misfire == MisfirePolicy.Skip ? "skip" : "run-once",
            Overlap = Overlap.ToString().ToLowerInvariant(),
        };
        message.Hosts.AddRange(Hosts);
        message.Tags.AddRange(Tags);
        foreach (var step in Steps)
        {
            var s = new ScheduleStep
            {
                Name = step.Name, Task = step.Task, OnFailure = step.StopOnFailure ? "stop" : "continue",
                MaxConcurrency = step.MaxConcurrency, MaxErrors = step.MaxErrors, ExecutionTimeout = step.ExecutionTimeout,
            };
            s.Parameters.Add(step.Parameters);
            message.Steps.Add(s);
        }
        return message;
    }
}
