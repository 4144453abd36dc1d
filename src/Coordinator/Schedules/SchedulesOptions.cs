using System.ComponentModel.DataAnnotations;

namespace Fleet.Coordinator.Schedules;

/// <summary>Section "Fleet:Schedules".</summary>
public sealed class SchedulesOptions : IValidatableObject
{
    public const string Section = "Fleet:Schedules";

    /// <summary>Whether this replica runs the scheduler loop (every replica may: the occurrence row makes each fire exactly once).</summary>
    public bool RunScheduler { get; set; } = true;

    /// <summary>How often the scheduler looks for due occurrences and advances open windows.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A fire time noticed later than this counts as missed (the coordinator was down) and the misfire policy applies.</summary>
    public TimeSpan MisfireThreshold { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Load the YAML schedules of <see cref="DefaultsDirectory"/> on the installation's first start.</summary>
    public bool LoadDefaults { get; set; } = true;

    /// <summary>Where the default schedules are; empty: "schedules" beside the coordinator's binaries (a copy of deploy/schedules).</summary>
    public string DefaultsDirectory { get; set; } = "";

    public string EffectiveDefaultsDirectory => DefaultsDirectory.Length > 0 ? DefaultsDirectory : Path.Combine(AppContext.BaseDirectory, "schedules");

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Interval < TimeSpan.FromMilliseconds(10) || Interval > TimeSpan.FromMinutes(1))
            yield return new($"Fleet:Schedules:Interval: '{Interval}' must be between 10 ms and 1 minute.", [nameof(Interval)]);
        if (MisfireThreshold < Interval)
            yield return new($"Fleet:Schedules:MisfireThreshold: '{MisfireThreshold}' must be at least the interval ({Interval}).", [nameof(MisfireThreshold)]);
    }
}
