using System.Buffers;
using Fleet.Agent.Logs;

namespace Fleet.Agent.Tests.Logs;

/// <summary>The hint check decides which lines skip the credential regexes: it must find every line the old
/// case-insensitive <see cref="SearchValues{T}"/> scan over the same hints found, and no other.</summary>
public sealed class CredentialHintTests
{
    static readonly SearchValues<string> Reference = SearchValues.Create(LogEntryProcessor.CredentialHints, StringComparison.OrdinalIgnoreCase);

    [Theory]
    [InlineData("2026-11-28T04:00:00.123Z INFO  [worker-03] req=00ab seq=1 GET /api/v1/orders?page=3 user=alice status=200", false)]
    [InlineData("login with PassWord=hunter2", true)]
    [InlineData("pwd", true)]
    [InlineData("xPWDx", true)]
    [InlineData("the SECRET is out", true)]
    [InlineData("secre t", false)]
    [InlineData("Bearer tOkEn", true)]
    [InlineData("api_key=1", true)]
    [InlineData("KEY", true)]
    [InlineData("ke", false)]
    [InlineData("Authorization: Basic x", true)]
    [InlineData("authorizatio", false)]
    [InlineData("postgres://u:p@h/db", true)]
    [InlineData(":/", false)]
    [InlineData("walk kick cz zz :: w", false)]
    [InlineData("", false)]
    public void Finds_exactly_the_lines_with_a_hint(string line, bool expected)
    {
        Assert.Equal(expected, LogEntryProcessor.HasCredentialHint(line));
        Assert.Equal(line.AsSpan().ContainsAny(Reference), LogEntryProcessor.HasCredentialHint(line));
    }

    [Fact]
    public void Agrees_with_the_reference_scan_on_random_lines_made_of_hint_pieces()
    {
        var random = new Random(11);
        string[] pieces = ["pass", "w", "W", "p", "wd", "sec", "SEC", "ret", "tok", "en", "k", "ey", "KE", "Y", "author", "ization", "iz", ":", "/", "//", "a", " ", "x", "z", "c"];
        for (var i = 0; i < 20_000; i++)
        {
            var line = string.Concat(Enumerable.Range(0, random.Next(0, 12)).Select(_ => pieces[random.Next(pieces.Length)]));
            Assert.True(line.AsSpan().ContainsAny(Reference) == LogEntryProcessor.HasCredentialHint(line), line);
        }
    }
}
