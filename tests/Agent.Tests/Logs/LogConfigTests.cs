using Fleet.Agent.Configuration;
using Fleet.Agent.Logs;

namespace Fleet.Agent.Tests.Logs;

public sealed class LogConfigTests
{
    [Fact]
    public void LogsSection_IsParsedIntoSources()
    {
        var options = AgentConfigFile.Parse("""
            { "logs": {
                "sources": [
                  { "name": "app-errors", "path": "/var/log/app/*.log", "multilineStart": "^\\d{4}-", "severity": "error", "startAt": "beginning" },
                  { "name": "auth", "path": "/var/log/auth.log", "include": "Failed password", "pattern": "from (?<ip>\\S+)" },
                  { "name": "app-journal", "journal": "interview-app", "exclude": "healthcheck" }
                ],
                "redact": ["card=\\d+"],
                "batchMaxBytes": 131072,
                "batchMaxSeconds": 0.5
            } }
            """, "test");

        var logs = options.Logs;
        Assert.Equal(["app-errors", "auth", "app-journal"], logs.Sources.Select(s => s.Name).ToArray());
        Assert.Equal(LogStartAt.Beginning, logs.Sources[0].StartAt);
        Assert.Equal("error", logs.Sources[0].Severity);
        Assert.Matches(logs.Sources[0].MultilineStart!, "2024-01-01 x");
        Assert.Equal("interview-app", logs.Sources[2].JournalUnit);
        Assert.Single(logs.Redact);
        Assert.Equal(131072, logs.BatchMaxBytes);
        Assert.Equal(TimeSpan.FromSeconds(0.5), logs.BatchMaxDelay);
        Assert.Equal(LogSettings.RegexTimeout, logs.Sources[1].Pattern!.MatchTimeout);
    }

    [Fact]
    public void SampleAgentConfig_DeclaresValidLogSources()
    {
        var options = AgentConfigFile.Load(Path.Combine(Fleet.Testing.RepoPaths.Root, "deploy", "agent", "agent.json"));
        Assert.Contains(options.Logs.Sources, s => s.JournalUnit == "interview-app");
        Assert.Equal("10.0.0.1", options.Logs.Sources.Single(s => s.Name == "auth").Pattern!.Match("Failed password for root from 10.0.0.1 port 22").Groups["ip"].Value);
    }

    [Theory]
    [InlineData("""{ "logs": { "sources": [ { "name": "a", "path": "/var/log/*.log", "include": "(unclosed" } ] } }""", "logs.sources[0].include")]
    [InlineData("""{ "logs": { "sources": [ { "name": "a", "path": "relative/*.log" } ] } }""", "logs.sources[0].path")]
    [InlineData("""{ "logs": { "sources": [ { "name": "a", "path": "/x.log", "journal": "u" } ] } }""", "logs.sources[0]")]
    [InlineData("""{ "logs": { "sources": [ { "name": "a", "path": "/x.log", "severity": "loud" } ] } }""", "logs.sources[0].severity")]
    [InlineData("""{ "logs": { "sources": [ { "name": "a", "path": "/x.log", "startAt": "middle" } ] } }""", "logs.sources[0].startAt")]
    [InlineData("""{ "logs": { "redact": ["[bad"] } }""", "logs.redact[0]")]
    [InlineData("""{ "logs": { "batchMaxBytes": 2000000 } }""", "logs.batchMaxBytes")]
    [InlineData("""{ "logs": { "sources": [ { "name": "a", "path": "/x.log", "multiline": "^x" } ] } }""", "logs.sources[0].multiline")]
    public void InvalidLogsConfig_FailsNamingTheKey(string json, string key)
    {
        var ex = Assert.Throws<AgentConfigException>(() => AgentConfigFile.Parse(json, "test"));
        Assert.Contains($"'{key}'", ex.Message, StringComparison.Ordinal);
    }
}
