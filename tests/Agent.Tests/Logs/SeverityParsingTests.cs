using System.Text.RegularExpressions;
using Fleet.Agent.Logs;

namespace Fleet.Agent.Tests.Logs;

/// <summary>The allocation-free severity parse must classify exactly as the Match + ToUpperInvariant version did.</summary>
public sealed class SeverityParsingTests
{
    static readonly Regex Word = new(@"\b(?:ERROR|ERR|FATAL|CRIT|CRITICAL|EMERG|ALERT|WARN|WARNING|INFO|NOTICE|DEBUG|TRACE|Error|Warning|Info|Debug|error|warning|warn|info|debug)\b");

    static string Reference(string message)
    {
        var match = Word.Match(message.Length > 1024 ? message[..1024] : message);
        if (!match.Success) return "";
        return match.Value.ToUpperInvariant() switch
        {
            "ERROR" or "ERR" or "FATAL" or "CRIT" or "CRITICAL" or "EMERG" or "ALERT" => "error",
            "WARN" or "WARNING" => "warn",
            "INFO" or "NOTICE" => "info",
            _ => "debug",
        };
    }

    [Theory]
    [InlineData("2026-11-28T04:00:00.123Z INFO  [worker-03] req=00ab seq=1 GET /api", "info")]
    [InlineData("x WARN y", "warn")]
    [InlineData("Warning: disk", "warn")]
    [InlineData("ERRORS everywhere, then ERR", "error")]
    [InlineData("<3>CRITICAL failure", "error")]
    [InlineData("notice me", "")]
    [InlineData("NOTICE me", "info")]
    [InlineData("TRACE", "debug")]
    [InlineData("_INFO INFO_ nothing", "")]
    [InlineData("", "")]
    public void Classifies_as_before(string line, string expected)
    {
        Assert.Equal(expected, LogEntryProcessor.ParseSeverity(line));
        Assert.Equal(Reference(line), LogEntryProcessor.ParseSeverity(line));
    }

    [Fact]
    public void Agrees_with_the_old_parse_on_random_lines_and_at_the_1024_character_cut()
    {
        var random = new Random(5);
        string[] pieces = ["ERROR", "Err", "ERR", "error", "WARN", "Warning", "warn", "INFO", "Info", "notice", "NOTICE", "DEBUG", "trace", "TRACE", "FATAL", "Fatal", "CRIT", "alert", "ALERT", " ", "_", "x", "1", "[", ":", "é"];
        for (var i = 0; i < 20_000; i++)
        {
            var line = string.Concat(Enumerable.Range(0, random.Next(0, 10)).Select(_ => pieces[random.Next(pieces.Length)]));
            Assert.True(Reference(line) == LogEntryProcessor.ParseSeverity(line), line);
        }
        foreach (var pad in new[] { 1019, 1020, 1021, 1022, 1023, 1024 })
        {
            var line = new string(' ', pad) + "WARNING";
            Assert.Equal(Reference(line), LogEntryProcessor.ParseSeverity(line));
        }
    }
}
