using System.Globalization;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Schedules;

/// <summary>How schedules, preview fires, occurrences and open windows read as text.</summary>
internal static class ScheduleText
{
    /// <summary>"2026-03-29T01:00:00Z"; "-" when absent.</summary>
    public static string Utc(Timestamp? time) =>
        time is null ? "" : time.ToDateTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>The time in the schedule's zone with its offset ("2026-03-29T03:00:00+02:00"); UTC when the zone is unknown here.</summary>
    public static string Local(Timestamp? time, string zone)
    {
        if (time is null) return "";
        var utc = time.ToDateTimeOffset();
        var local = FindZone(zone) is { } info ? TimeZoneInfo.ConvertTime(utc, info) : utc;
        return local.ToString("yyyy-MM-dd'T'HH:mm:sszzz", CultureInfo.InvariantCulture);
    }

    private static TimeZoneInfo? FindZone(string zone)
    {
        try
        {
            return TimeZoneInfo.FindSystemTimeZoneById(zone.Length == 0 ? "UTC" : zone);
        }
        catch (Exception ex) when (ex is TimeZoneNotFoundException or InvalidTimeZoneException)
        {
            return null;
        }
    }

    public static string Zone(Schedule schedule) => schedule.TimeZone.Length == 0 ? "UTC" : schedule.TimeZone;

    /// <summary>"enabled", "paused" or "disabled" (a disabled schedule is off until enabled again; paused until resumed).</summary>
    public static string State(Schedule schedule) =>
        schedule.HasEnabled && !schedule.Enabled ? "disabled" : schedule.Paused ? "paused" : "enabled";

    /// <summary>"security.scan (task-unavailable), logs.scan (task-unavailable)": the steps that cannot run now and why.</summary>
    public static string DisabledSteps(Schedule schedule) =>
        string.Join(", ", schedule.Steps.Where(s => s.Disabled).Select(s => $"{s.Task} ({(s.DisabledReason.Length > 0 ? s.DisabledReason : "disabled")})"));

    public static string Targets(Schedule schedule) => string.Join(", ", schedule.Hosts.Concat(schedule.Tags));

    public static void WriteList(TextWriter output, IEnumerable<Schedule> schedules)
    {
        var table = new TextTable("ID", "NAME", "CRON", "ZONE", "DURATION", "NEXT FIRE (UTC)", "NEXT FIRE (LOCAL)", "STATE", "STEPS", "DISABLED STEPS");
        foreach (var schedule in schedules)
        {
            table.AddRow(schedule.Id, schedule.Name, schedule.Cron, Zone(schedule), schedule.Duration, Utc(schedule.NextFire),
                Local(schedule.NextFire, Zone(schedule)), State(schedule), schedule.Steps.Count.ToString(CultureInfo.InvariantCulture), DisabledSteps(schedule));
        }
        table.WriteTo(output);
    }

    public static void WriteDetail(TextWriter output, Schedule schedule)
    {
        var fields = new (string Label, string Value)[]
        {
            ("ID", schedule.Id),
            ("Name", schedule.Name),
            ("Description", schedule.Description),
            ("Cron", schedule.Cron),
            ("Time zone", Zone(schedule)),
            ("Duration", schedule.Duration),
            ("Cutoff", schedule.Cutoff),
            ("On close", schedule.OnClose),
            ("Targets", Targets(schedule)),
            ("Misfire", schedule.Misfire),
            ("Overlap", schedule.Overlap),
            ("State", State(schedule)),
            ("Next fire", schedule.NextFire is null ? "" : $"{Utc(schedule.NextFire)} ({Local(schedule.NextFire, Zone(schedule))} {Zone(schedule)})"),
            ("Source", schedule.Source),
            ("Created by", schedule.CreatedBy),
            ("Created", Utc(schedule.CreatedAt)),
            ("Updated", Utc(schedule.UpdatedAt)),
        };
        WriteFields(output, fields);
        if (schedule.Steps.Count == 0) return;
        output.WriteLine();
        var table = new TextTable("STEP", "NAME", "TASK", "PARAMETERS", "ON FAILURE", "MAX CONCURRENCY", "MAX ERRORS", "TIMEOUT", "AVAILABLE");
        for (var i = 0; i < schedule.Steps.Count; i++)
        {
            var step = schedule.Steps[i];
            table.AddRow(i.ToString(CultureInfo.InvariantCulture), step.Name, step.Task,
                string.Join(", ", step.Parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}")),
                step.OnFailure, step.MaxConcurrency, step.MaxErrors, step.ExecutionTimeout,
                step.Disabled ? $"no ({(step.DisabledReason.Length > 0 ? step.DisabledReason : "disabled")})" : "yes");
        }
        table.WriteTo(output);
    }

    /// <summary>After create/update: the next window and the steps that would be skipped now.</summary>
    public static void WriteSaved(TextWriter output, string verb, Schedule schedule)
    {
        var next = schedule.NextFire is null ? $"no next window ({State(schedule)})"
            : $"next window {Utc(schedule.NextFire)} ({Local(schedule.NextFire, Zone(schedule))} {Zone(schedule)}) for {schedule.Duration}";
        output.WriteLine($"{verb} schedule {schedule.Id} ({schedule.Name}): {next}.");
        for (var i = 0; i < schedule.Steps.Count; i++)
        {
            var step = schedule.Steps[i];
            if (step.Disabled) output.WriteLine($"  step {i} {step.Task} is disabled now ({step.DisabledReason}): it is skipped unless a targeted agent offers it when the step starts.");
        }
    }

    public static void WritePreview(TextWriter output, PreviewScheduleResponse preview)
    {
        var zone = preview.TimeZone.Length == 0 ? "UTC" : preview.TimeZone;
        output.WriteLine($"Next {preview.Fires.Count} windows of schedule {preview.ScheduleId} (zone {zone}):");
        var table = new TextTable("START (UTC)", "END (UTC)", $"START ({zone})", $"END ({zone})", "OVERLAPS");
        foreach (var fire in preview.Fires)
        {
            table.AddRow(Utc(fire.Start), Utc(fire.End), fire.LocalStart, fire.LocalEnd, string.Join("; ", fire.Overlaps.Select(Overlap)));
        }
        table.WriteTo(output);
        var overlapping = preview.Fires.Count(f => f.Overlaps.Count > 0);
        if (overlapping > 0) output.WriteLine($"{overlapping} of {preview.Fires.Count} windows overlap other schedules' windows.");
    }

    private static string Overlap(WindowOverlap overlap) =>
        $"{overlap.ScheduleId} {Utc(overlap.Start)}..{Utc(overlap.End)} ({overlap.SharedHosts} shared host{(overlap.SharedHosts == 1 ? "" : "s")})";

    /// <summary>The occurrence's header and a table of its steps with their runs.</summary>
    public static void WriteOccurrence(TextWriter output, Occurrence occurrence)
    {
        var fields = new (string Label, string Value)[]
        {
            ("Occurrence", occurrence.Id),
            ("Schedule", occurrence.ScheduleId),
            ("Kind", occurrence.Kind),
            ("State", occurrence.State + (occurrence.Reason.Length > 0 ? $" ({occurrence.Reason})" : "")),
            ("Scheduled", Utc(occurrence.Scheduled)),
            ("Ends", Utc(occurrence.Ends)),
            ("Opened", Utc(occurrence.OpenedAt)),
            ("Closed", Utc(occurrence.ClosedAt)),
            ("Hosts", string.Join(", ", occurrence.Hosts)),
            ("Created by", occurrence.CreatedBy),
        };
        WriteFields(output, fields);
        if (occurrence.Steps.Count == 0) return;
        output.WriteLine();
        WriteSteps(output, occurrence.Steps);
        var runs = occurrence.Steps.Where(s => s.RunId.Length > 0).Select(s => s.RunId).ToList();
        if (runs.Count > 0)
        {
            output.WriteLine();
            foreach (var run in runs) output.WriteLine($"  fleetctl runs show {run}");
        }
    }

    public static void WriteSteps(TextWriter output, IEnumerable<OccurrenceStep> steps)
    {
        var table = new TextTable("STEP", "TASK", "STATE", "REASON", "RUN", "RUN STATUS");
        foreach (var step in steps)
            table.AddRow(step.Index.ToString(CultureInfo.InvariantCulture), step.Task, step.State, step.Reason, step.RunId, step.RunStatus);
        table.WriteTo(output);
    }

    /// <summary>One row per occurrence, newest first: its state and the run of each step.</summary>
    public static void WriteHistory(TextWriter output, IEnumerable<Occurrence> occurrences)
    {
        var table = new TextTable("OCCURRENCE", "SCHEDULED (UTC)", "KIND", "STATE", "REASON", "STEPS", "RUNS");
        foreach (var occurrence in occurrences)
        {
            var steps = occurrence.Steps;
            var summary = string.Join(", ", steps.GroupBy(s => s.State, StringComparer.Ordinal).Select(g => $"{g.Count()} {g.Key}"));
            var runs = string.Join(", ", steps.Where(s => s.RunId.Length > 0).Select(s => s.RunStatus.Length > 0 ? $"{s.RunId} ({s.RunStatus})" : s.RunId));
            table.AddRow(occurrence.Id, Utc(occurrence.Scheduled), occurrence.Kind, occurrence.State, occurrence.Reason, summary, runs);
        }
        table.WriteTo(output);
    }

    public static void WriteWindows(TextWriter output, IEnumerable<OpenWindow> windows, TimeProvider time)
    {
        var now = time.GetUtcNow();
        var table = new TextTable("OCCURRENCE", "SCHEDULE", "ENDS (UTC)", "REMAINING", "HOSTS");
        foreach (var window in windows.OrderBy(w => w.Ends?.ToDateTimeOffset()).ThenBy(w => w.ScheduleId, StringComparer.Ordinal))
        {
            var left = window.Ends is null ? "" : window.Ends.ToDateTimeOffset() <= now ? "closing" : DurationText.Format(window.Ends.ToDateTimeOffset() - now);
            table.AddRow(window.OccurrenceId, window.ScheduleId, Utc(window.Ends), left, string.Join(", ", window.Hosts));
        }
        table.WriteTo(output);
    }

    private static void WriteFields(TextWriter output, (string Label, string Value)[] fields)
    {
        var width = fields.Max(f => f.Label.Length) + 2;
        foreach (var (label, value) in fields) output.WriteLine($"{(label + ":").PadRight(width)}{(value.Length == 0 ? "-" : value)}");
    }
}
