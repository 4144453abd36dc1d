namespace Fleet.Agent.Probes;

/// <summary>Creates a probe from its settings; throws <see cref="ArgumentException"/> naming the probe and key when they are invalid.</summary>
public delegate IProbe ProbeFactory(ProbeSettings settings, TimeProvider timeProvider);

/// <summary>
/// Probe kinds and their factories. <see cref="Default"/> knows http, tcp, postgres, redis and tls. Probes that hold
/// resources (http, postgres) are <see cref="IDisposable"/>/<see cref="IAsyncDisposable"/>; whoever creates a probe
/// disposes it.
/// </summary>
public sealed class ProbeRegistry
{
    readonly Dictionary<string, ProbeFactory> factories;

    public ProbeRegistry(IEnumerable<KeyValuePair<string, ProbeFactory>> factories)
    {
        this.factories = new Dictionary<string, ProbeFactory>(factories, StringComparer.OrdinalIgnoreCase);
    }

    public static ProbeRegistry Default { get; } = new([
        new(ProbeKinds.Http, static (s, t) => new HttpProbe(s, t)),
        new(ProbeKinds.Tcp, static (s, t) => new TcpProbe(s, t)),
        new(ProbeKinds.Postgres, static (s, t) => new PostgresProbe(s, t)),
        new(ProbeKinds.Redis, static (s, t) => new RedisProbe(s, t)),
        new(ProbeKinds.Tls, static (s, t) => new TlsProbe(s, t)),
    ]);

    /// <summary>The known kinds, sorted.</summary>
    public IReadOnlyList<string> Kinds => [.. factories.Keys.Order(StringComparer.Ordinal)];

    public IProbe Create(ProbeSettings settings) => Create(settings, TimeProvider.System);

    /// <summary>Checks the common settings and creates the probe of <see cref="ProbeSettings.Kind"/>, timed by <paramref name="timeProvider"/>.</summary>
    /// <exception cref="ArgumentException">Unknown kind (named in the message) or invalid settings.</exception>
    public IProbe Create(ProbeSettings settings, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(timeProvider);
        if (string.IsNullOrWhiteSpace(settings.Name)) throw new ArgumentException($"a {settings.Kind} probe has no name");
        if (string.IsNullOrWhiteSpace(settings.Kind) || !factories.TryGetValue(settings.Kind, out var factory))
            throw new ArgumentException($"probe '{settings.Name}': unknown kind '{settings.Kind}' (known: {string.Join(", ", Kinds)})");
        if (settings.Interval <= TimeSpan.Zero) throw ProbeSettingsError.Invalid(settings, "interval", $"{settings.Interval} must be positive");
        if (settings.Timeout <= TimeSpan.Zero) throw ProbeSettingsError.Invalid(settings, "timeout", $"{settings.Timeout} must be positive");
        return factory(settings, timeProvider);
    }
}
