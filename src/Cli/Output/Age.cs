using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Output;

/// <summary>Relative ages for humans: "4s ago", "12m ago", "5h ago", "3d ago".</summary>
internal static class Age
{
    public static string Ago(Timestamp? timestamp, TimeProvider time) =>
        timestamp is null ? "never" : Ago(timestamp.ToDateTimeOffset(), time.GetUtcNow());

    public static string Ago(DateTimeOffset then, DateTimeOffset now)
    {
        var age = now - then;
        if (age < TimeSpan.Zero) age = TimeSpan.Zero; // clock skew between coordinator and operator
        return age.TotalSeconds < 60 ? $"{(int)age.TotalSeconds}s ago"
            : age.TotalMinutes < 60 ? $"{(int)age.TotalMinutes}m ago"
            : age.TotalHours < 48 ? $"{(int)age.TotalHours}h ago"
            : $"{(int)age.TotalDays}d ago";
    }

    /// <summary>Absolute UTC time with its age, for detail views: "2025-01-02 03:04:05Z (4s ago)".</summary>
    public static string WithAge(Timestamp? timestamp, TimeProvider time) =>
        timestamp is null ? "never" : $"{timestamp.ToDateTimeOffset():yyyy-MM-dd HH:mm:ss}Z ({Ago(timestamp, time)})";
}
