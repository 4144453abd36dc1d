using Fleet.Agent.Probes;

namespace Fleet.Agent.Tests.Probes;

public sealed class ProbeRegistryTests
{
    [Fact]
    public void Default_KnowsTheFiveKinds()
    {
        Assert.Equal(["http", "postgres", "redis", "tcp", "tls"], ProbeRegistry.Default.Kinds);
    }

    [Theory]
    [InlineData("http")]
    [InlineData("tcp")]
    [InlineData("postgres")]
    [InlineData("redis")]
    [InlineData("tls")]
    public void Create_BuildsAProbeOfTheKind_WithNameAndTarget(string kind)
    {
        var settings = new ProbeSettings
        {
            Name = "p1",
            Kind = kind,
            Url = new Uri("https://api.example.com/api/health"),
            Address = "db.example.com:5432",
            ConnectionString = "Host=db.example.com;Port=5432;Database=orders;Username=monitor;Password=pw",
        };

        var probe = ProbeRegistry.Default.Create(settings);

        Assert.Equal("p1", probe.Name);
        Assert.Equal(kind, probe.Kind);
        Assert.Equal(kind switch
        {
            "http" => "https://api.example.com/api/health",
            "postgres" => "db.example.com:5432/orders",
            _ => "db.example.com:5432",
        }, probe.Target);
    }

    [Fact]
    public void Create_Throws_NamingTheUnknownKind()
    {
        var error = Assert.Throws<ArgumentException>(() => ProbeRegistry.Default.Create(new ProbeSettings { Name = "q", Kind = "mqtt" }));

        Assert.Equal("probe 'q': unknown kind 'mqtt' (known: http, postgres, redis, tcp, tls)", error.Message);
    }

    [Theory]
    [InlineData("http", "url")]
    [InlineData("tcp", "address")]
    [InlineData("redis", "address")]
    [InlineData("tls", "address")]
    [InlineData("postgres", "connectionString")]
    public void Create_Throws_NamingTheMissingKey(string kind, string key)
    {
        var error = Assert.Throws<ArgumentException>(() => ProbeRegistry.Default.Create(new ProbeSettings { Name = "x", Kind = kind }));

        Assert.Equal($"probe 'x' ({kind}): key '{key}' is required" + (key == "address" ? " (host:port)" : ""), error.Message);
    }

    [Theory]
    [InlineData("localhost")]
    [InlineData("localhost:0")]
    [InlineData("localhost:70000")]
    [InlineData("::1:80")]
    [InlineData(":80")]
    public void Create_RejectsAnAddressThatIsNotHostPort(string address)
    {
        var error = Assert.Throws<ArgumentException>(() => ProbeRegistry.Default.Create(new ProbeSettings { Name = "x", Kind = "tcp", Address = address }));

        Assert.Contains("key 'address'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_RejectsAnInvalidRegexAndStatusAndTimings()
    {
        var http = new ProbeSettings { Name = "x", Kind = "http", Url = new Uri("http://h/") };

        Assert.Contains("key 'bodyMatches'", Assert.Throws<ArgumentException>(() => ProbeRegistry.Default.Create(http with { BodyMatches = "([" })).Message, StringComparison.Ordinal);
        Assert.Contains("key 'expectedStatus'", Assert.Throws<ArgumentException>(() => ProbeRegistry.Default.Create(http with { ExpectedStatus = 42 })).Message, StringComparison.Ordinal);
        Assert.Contains("key 'timeout'", Assert.Throws<ArgumentException>(() => ProbeRegistry.Default.Create(http with { Timeout = TimeSpan.Zero })).Message, StringComparison.Ordinal);
        Assert.Contains("key 'interval'", Assert.Throws<ArgumentException>(() => ProbeRegistry.Default.Create(http with { Interval = TimeSpan.FromSeconds(-1) })).Message, StringComparison.Ordinal);
        Assert.Contains("key 'url'", Assert.Throws<ArgumentException>(() => ProbeRegistry.Default.Create(http with { Url = new Uri("ftp://h/") })).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Settings_HaveTheDocumentedDefaults_AndToStringHidesSecrets()
    {
        var settings = new ProbeSettings
        {
            Name = "db",
            Kind = "postgres",
            ConnectionString = "Host=db;Password=Pg-Secret-42",
            Password = "Redis-Secret-43",
        };

        Assert.Equal(TimeSpan.FromSeconds(30), settings.Interval);
        Assert.Equal(TimeSpan.FromSeconds(5), settings.Timeout);
        Assert.Equal(14, settings.WarnDays);
        Assert.False(settings.SkipTlsVerification);
        Assert.DoesNotContain("Secret", settings.ToString(), StringComparison.Ordinal);
        Assert.Contains("ConnectionString = ***", settings.ToString(), StringComparison.Ordinal);
    }
}
