using System.Globalization;
using System.Text;

namespace Fleet.Agent.Probes;

/// <summary>
/// One probe from the agent config. Common keys: <see cref="Name"/>, <see cref="Kind"/>, <see cref="Interval"/>,
/// <see cref="Timeout"/>; the rest belong to one or more kinds (see each property). Checked when the probe is created
/// (<see cref="ProbeRegistry.Create(ProbeSettings)"/>): a missing or invalid key is an <see cref="ArgumentException"/>
/// naming the probe and the key. <see cref="ToString"/> never prints the password or the connection string.
/// </summary>
public sealed record ProbeSettings
{
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(5);
    public const int DefaultWarnDays = 14;

    public required string Name { get; init; }

    /// <summary>http | tcp | postgres | redis | tls (see <see cref="ProbeKinds"/>).</summary>
    public required string Kind { get; init; }

    public TimeSpan Interval { get; init; } = DefaultInterval;

    /// <summary>Bound on one run, connecting included.</summary>
    public TimeSpan Timeout { get; init; } = DefaultTimeout;

    /// <summary>http: the URL to GET (http or https).</summary>
    public Uri? Url { get; init; }

    /// <summary>http: the status that counts as healthy; null means any 2xx.</summary>
    public int? ExpectedStatus { get; init; }

    /// <summary>http: the body must contain this text (ordinal comparison).</summary>
    public string? BodyContains { get; init; }

    /// <summary>http: the body must match this regular expression.</summary>
    public string? BodyMatches { get; init; }

    /// <summary>http: follow redirects (off by default, like <c>curl -f</c> without <c>-L</c>).</summary>
    public bool FollowRedirects { get; init; }

    /// <summary>tcp, redis, tls: "host:port" ("[::1]:6379" for an IPv6 literal).</summary>
    public string? Address { get; init; }

    /// <summary>postgres: an Npgsql connection string. Its password never appears in the target, reasons or logs.</summary>
    public string? ConnectionString { get; init; }

    /// <summary>redis: ACL user name for AUTH (needs <see cref="Password"/>).</summary>
    public string? Username { get; init; }

    /// <summary>redis: password for AUTH; never logged.</summary>
    public string? Password { get; init; }

    /// <summary>tls: fail when the certificate expires in fewer days than this.</summary>
    public int WarnDays { get; init; } = DefaultWarnDays;

    /// <summary>http, tls: accept any server certificate (self-signed, wrong name). Off by default.</summary>
    public bool SkipTlsVerification { get; init; }

    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append(CultureInfo.InvariantCulture, $"Name = {Name}, Kind = {Kind}, Interval = {Interval}, Timeout = {Timeout}");
        if (Url is not null) builder.Append(CultureInfo.InvariantCulture, $", Url = {Url}");
        if (ExpectedStatus is { } status) builder.Append(CultureInfo.InvariantCulture, $", ExpectedStatus = {status}");
        if (BodyContains is not null) builder.Append(CultureInfo.InvariantCulture, $", BodyContains = {BodyContains}");
        if (BodyMatches is not null) builder.Append(CultureInfo.InvariantCulture, $", BodyMatches = {BodyMatches}");
        if (FollowRedirects) builder.Append(", FollowRedirects = True");
        if (Address is not null) builder.Append(CultureInfo.InvariantCulture, $", Address = {Address}");
        if (ConnectionString is not null) builder.Append(", ConnectionString = ***");
        if (Username is not null) builder.Append(CultureInfo.InvariantCulture, $", Username = {Username}");
        if (Password is not null) builder.Append(", Password = ***");
        builder.Append(CultureInfo.InvariantCulture, $", WarnDays = {WarnDays}");
        if (SkipTlsVerification) builder.Append(", SkipTlsVerification = True");
        return true;
    }
}

/// <summary>The probe kinds <see cref="ProbeRegistry.Default"/> knows.</summary>
public static class ProbeKinds
{
    public const string Http = "http";
    public const string Tcp = "tcp";
    public const string Postgres = "postgres";
    public const string Redis = "redis";
    public const string Tls = "tls";
}
