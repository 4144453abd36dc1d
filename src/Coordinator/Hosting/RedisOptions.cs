namespace Fleet.Coordinator.Hosting;

/// <summary>
/// Section "Fleet:Redis". Redis is used when ConnectionStrings:Redis is set (presence, routing, latest values);
/// otherwise in-process implementations serve embedded mode.
/// </summary>
public sealed class RedisOptions
{
    public const string Section = "Fleet:Redis";

    /// <summary>Prefix of every key, so several installations (or test classes) can share one Redis.</summary>
    public string KeyPrefix { get; set; } = "fleet:";
}
