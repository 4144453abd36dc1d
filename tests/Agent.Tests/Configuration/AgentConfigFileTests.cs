using Fleet.Agent.Configuration;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Configuration;

public sealed class AgentConfigFileTests
{
    static AgentConfigException Fails(string json) =>
        Assert.Throws<AgentConfigException>(() => AgentConfigFile.Parse(json, "agent.json"));

    [Fact]
    public void FullConfig_IsRead()
    {
        var options = AgentConfigFile.Parse("""
            {
              // comments are allowed
              "coordinator": "http://coordinator.example:5081",
              "agentId": "web-1",
              "stateDirectory": "/var/lib/fleet-agent",
              "tags": { "role": "web", "env": "prod" },
              "heartbeatSeconds": 5,
              "reconnectMaxSeconds": 60,
              "outboxMaxMegabytes": 64,
            }
            """, "agent.json");

        Assert.Equal(new Uri("http://coordinator.example:5081"), options.Coordinator);
        Assert.Equal("web-1", options.AgentId);
        Assert.Equal("prod", options.Tags["env"]);
        Assert.Equal(TimeSpan.FromSeconds(5), options.HeartbeatInterval);
        Assert.Equal(TimeSpan.FromSeconds(60), options.ReconnectMaxDelay);
        Assert.Equal(64L * 1024 * 1024, options.OutboxMaxBytes);
    }

    [Fact]
    public void EmptyObject_GivesDefaults()
    {
        var options = AgentConfigFile.Parse("{}", "agent.json");
        Assert.Equal(new Uri("http://127.0.0.1:5081"), options.Coordinator);
        Assert.Null(options.AgentId);
        Assert.Equal(AgentOptions.DefaultStateDirectory, options.StateDirectory);
    }

    [Fact]
    public void UnknownKey_IsNamed()
    {
        var error = Fails("""{ "coordinator": "http://x:5081", "heartbeatSecs": 5 }""");
        Assert.Contains("unknown key 'heartbeatSecs'", error.Message);
        Assert.Contains("agent.json", error.Message);
    }

    [Theory]
    [InlineData("""{ "heartbeatSeconds": "five" }""", "heartbeatSeconds", "expected a number")]
    [InlineData("""{ "coordinator": 5081 }""", "coordinator", "expected a string")]
    [InlineData("""{ "tags": { "role": 1 } }""", "tags", "wrong type")]
    public void WrongType_IsNamed(string json, string key, string expectation)
    {
        var error = Fails(json);
        Assert.Contains($"'{key}", error.Message);
        Assert.Contains(expectation, error.Message);
    }

    [Theory]
    [InlineData("not a url")]
    [InlineData("ftp://coordinator:21")]
    [InlineData("/relative/path")]
    public void InvalidCoordinatorUrl_IsNamedWithItsValue(string url)
    {
        var error = Fails($$"""{ "coordinator": "{{url}}" }""");
        Assert.Contains("key 'coordinator'", error.Message);
        Assert.Contains($"'{url}'", error.Message);
    }

    [Theory]
    [InlineData("Web-1")]
    [InlineData("-web")]
    [InlineData("web 1")]
    [InlineData("")]
    public void MalformedAgentId_IsNamedWithItsValue(string id)
    {
        var error = Fails($$"""{ "agentId": "{{id}}" }""");
        Assert.Contains("key 'agentId'", error.Message);
        Assert.Contains($"'{id}' is not a valid agent id", error.Message);
    }

    [Theory]
    [InlineData("""{ "heartbeatSeconds": 0 }""", "heartbeatSeconds")]
    [InlineData("""{ "reconnectMaxSeconds": 100000 }""", "reconnectMaxSeconds")]
    [InlineData("""{ "outboxMaxMegabytes": 0 }""", "outboxMaxMegabytes")]
    [InlineData("""{ "stateDirectory": "relative/dir" }""", "stateDirectory")]
    [InlineData("""{ "tags": { "bad tag": "x" } }""", "tags.bad tag")]
    public void OutOfRangeValue_IsNamed(string json, string key)
    {
        var error = Fails(json);
        Assert.Contains($"key '{key}'", error.Message);
    }

    [Theory]
    [InlineData("{ \"coordinator\": ")]
    [InlineData("[1,2]")]
    [InlineData("null")]
    public void NotAnObject_OrBrokenJson_IsAClearError(string json)
    {
        var error = Fails(json);
        Assert.StartsWith("agent config agent.json:", error.Message);
    }

    [Fact]
    public void MissingFile_SaysHowToPointAtOne()
    {
        using var dir = new TempDirectory();
        var error = Assert.Throws<AgentConfigException>(() => AgentConfigFile.Load(dir.Combine("nope.json")));
        Assert.Contains("file not found", error.Message);
        Assert.Contains("--config", error.Message);
    }

    [Fact]
    public void CollectorsAndProbes_AreRead()
    {
        var options = AgentConfigFile.Parse("""
            {
              "collectors": {
                "cpu": { "intervalSeconds": 5 },
                "memory": {},
                "disk": { "enabled": false },
                "process": { "names": ["node", "postgres"] },
                "textfile": { "directory": "/var/lib/fleet-agent/textfile" }
              },
              "probes": [
                { "name": "app", "kind": "http", "url": "https://app.example/api/health", "intervalSeconds": 15 },
                { "name": "db", "kind": "postgres", "connectionString": "Host=localhost;Username=app;Password=secret;Database=app" },
                { "name": "cache", "kind": "redis", "address": "127.0.0.1:6379" }
              ],
              "metricsFlushSeconds": 5
            }
            """, "agent.json");

        Assert.Equal(["cpu", "memory", "process", "textfile"], options.Collectors.Keys.Order());
        Assert.Equal(TimeSpan.FromSeconds(5), options.Collectors["cpu"].Interval);
        Assert.Equal(["node", "postgres"], options.Collectors["process"].Processes);
        Assert.Equal(["app", "db", "cache"], options.Probes.Select(p => p.Name));
        Assert.Equal(TimeSpan.FromSeconds(15), options.Probes[0].Interval);
        Assert.Equal(TimeSpan.FromSeconds(5), options.MetricsFlushInterval);
    }

    [Fact]
    public void TextfileWatch_IsOnByDefault_AndCanBeTurnedOff()
    {
        var on = AgentConfigFile.Parse("""{ "collectors": { "textfile": { "directory": "/d" } } }""", "agent.json");
        var off = AgentConfigFile.Parse("""{ "collectors": { "textfile": { "directory": "/d", "watch": false } } }""", "agent.json");

        Assert.True(on.Collectors["textfile"].Watch);
        Assert.False(off.Collectors["textfile"].Watch);
    }

    [Fact]
    public void TheShippedExampleConfig_IsValid_AndWatchesTheTextfileDirectory()
    {
        var options = AgentConfigFile.Load(Path.Combine(RepoPaths.Root, "deploy", "agent", "agent.json"));

        Assert.True(options.Collectors["textfile"].Watch);
        Assert.Equal("/var/lib/fleet-agent/textfile", options.Collectors["textfile"].TextfileDirectory);
    }

    [Fact]
    public void NoCollectorsSection_EnablesTheHostDefaults()
    {
        var options = AgentConfigFile.Parse("{}", "agent.json");
        Assert.Equal(["cpu", "disk", "load", "memory", "network"], options.Collectors.Keys.Order());
        Assert.Empty(options.Probes);
    }

    [Theory]
    [InlineData("""{ "collectors": { "gpu": {} } }""", "collectors.gpu", "unknown collector")]
    [InlineData("""{ "collectors": { "cpu": { "intervalSeconds": 0 } } }""", "collectors.cpu.intervalSeconds", "out of range")]
    [InlineData("""{ "collectors": { "process": {} } }""", "collectors.process.names", "process name")]
    [InlineData("""{ "collectors": { "textfile": {} } }""", "collectors.textfile.directory", "directory")]
    [InlineData("""{ "collectors": { "textfile": { "directory": "/d", "watch": "yes" } } }""", "collectors.textfile.watch", "true or false")]
    [InlineData("""{ "collectors": { "cpu": { "watch": true } } }""", "collectors.cpu.watch", "only the textfile collector")]
    [InlineData("""{ "probes": [ { "name": "x", "kind": "mqtt" } ] }""", "probes[0].kind", "'mqtt' is not a probe kind")]
    [InlineData("""{ "probes": [ { "name": "a", "kind": "tcp", "address": "h:1" }, { "name": "a", "kind": "tcp", "address": "h:2" } ] }""", "probes[1].name", "unique")]
    [InlineData("""{ "probes": [ { "name": "app", "kind": "http", "url": "ftp://x" } ] }""", "probes[0].url", "'ftp://x'")]
    [InlineData("""{ "probes": [ { "name": "db", "kind": "tcp" } ] }""", "probes[0]", "address")]
    [InlineData("""{ "probes": [ { "name": "db", "kind": "tcp", "address": "h:1", "port": 5 } ] }""", "port", "unknown key")]
    public void BadCollectorOrProbe_IsNamed(string json, string key, string problem)
    {
        var error = Fails(json);
        Assert.Contains(key, error.Message);
        Assert.Contains(problem, error.Message);
    }
}
