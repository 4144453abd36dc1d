using Fleet.Agent.Logs;

namespace Fleet.Agent.Tests.Logs;

public sealed class LogTimeTests
{
    static readonly DateTimeOffset Now = new(2026, 11, 28, 23, 0, 0, TimeSpan.Zero);
    static readonly TimeZoneInfo Berlin = TimeZoneInfo.FindSystemTimeZoneById("Europe/Berlin");

    static DateTimeOffset? Parse(string line, DateTimeOffset? now = null, TimeZoneInfo? zone = null) =>
        LogTime.Parse(line, now ?? Now, zone ?? TimeZoneInfo.Utc) is { } ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;

    [Theory]
    [InlineData("2026-11-28T22:01:02Z ERROR boom", "2026-11-28T22:01:02.000+00:00")]
    [InlineData("2026-11-28T22:01:02.123456+01:00 started", "2026-11-28T21:01:02.123+00:00")]
    [InlineData("2026-11-28 22:01:02,250 INFO [main] ready", "2026-11-28T22:01:02.250+00:00")]
    [InlineData("2026-11-28T22:01:02-0530 x", "2026-11-29T03:31:02.000+00:00")]
    [InlineData("2026/11/28 22:01:02 [error] 123#0: *1 open() failed", "2026-11-28T22:01:02.000+00:00")]
    public void Iso8601AtTheStart_IsTheEntrysTime(string line, string expected) =>
        Assert.Equal(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), Parse(line));

    [Fact]
    public void IsoWithoutOffset_IsTheHostsLocalTime() =>
        Assert.Equal(new DateTimeOffset(2026, 11, 28, 21, 1, 2, TimeSpan.Zero), Parse("2026-11-28 22:01:02 app started", zone: Berlin));

    [Fact]
    public void Syslog_TakesTheCurrentYear_InTheLocalZone()
    {
        Assert.Equal(new DateTimeOffset(2026, 11, 28, 22, 1, 2, TimeSpan.Zero), Parse("Nov 28 22:01:02 web-1 sshd[812]: Failed password for root"));
        Assert.Equal(new DateTimeOffset(2026, 11, 3, 8, 0, 0, TimeSpan.Zero), Parse("Nov  3 09:00:00 web-1 cron[1]: job", zone: Berlin));
    }

    [Fact]
    public void Syslog_FromDecemberReadInJanuary_IsLastYear() =>
        Assert.Equal(new DateTimeOffset(2025, 12, 31, 23, 59, 0, TimeSpan.Zero),
            Parse("Dec 31 23:59:00 web-1 app: bye", now: new DateTimeOffset(2026, 1, 1, 0, 5, 0, TimeSpan.Zero)));

    [Fact]
    public void NginxAccessLog_BracketedTime_IsTheEntrysTime() =>
        Assert.Equal(new DateTimeOffset(2026, 11, 28, 21, 1, 2, TimeSpan.Zero),
            Parse("203.0.113.9 - - [28/Nov/2026:22:01:02 +0100] \"GET / HTTP/1.1\" 200 612 \"-\" \"curl/8.0\""));

    [Theory]
    [InlineData("line 0001 password=hunter1")]
    [InlineData("2026-13-28T22:01:02Z month 13")]
    [InlineData("2026-02-30 10:00:00 no such day")]
    [InlineData("Foo 28 22:01:02 not a month")]
    [InlineData("12345678901234567890 digits but no date")]
    [InlineData("[not/a/date] nope, nothing here at all")]
    [InlineData("short")]
    public void NoRecognisedTime_IsNull(string line) => Assert.Null(Parse(line));

    [Fact]
    public void FileSourceEntries_CarryTheParsedTime_OrTheReadTime()
    {
        var source = new LogSourceSettings { Name = "app", Path = "/x/*.log" };
        Assert.True(source.ParseTime);
        var settings = LogConfig.Validate(new LogsConfigDocument { Sources = [new() { Name = "app", Path = "/x/*.log", TimeFormat = "none" }] }, (k, p) => throw new ArgumentException(k + ": " + p));
        Assert.False(settings.Sources[0].ParseTime);
        var ex = Assert.Throws<ArgumentException>(() => LogConfig.Validate(new LogsConfigDocument { Sources = [new() { Name = "app", Path = "/x/*.log", TimeFormat = "iso" }] }, (k, p) => throw new ArgumentException(k + ": " + p)));
        Assert.Contains("logs.sources[0].timeFormat", ex.Message);
    }

    [Fact]
    public async Task TailedLine_StartingWithATime_IsShippedWithIt_OtherLinesWithTheReadTime()
    {
        await using var h = new LogHarness();
        h.Options.Logs.Sources.Add(LogHarness.FileSource("app", h.LogDirectory + "/*.log"));
        await h.StartAsync();
        LogHarness.Append(h.Log("app.log"), "2026-11-28T22:01:02.5Z ERROR boom", "no time here");
        var shipped = await h.ShippedUntilAsync(s => s.Count >= 2);
        Assert.Equal(new DateTimeOffset(2026, 11, 28, 22, 1, 2, 500, TimeSpan.Zero).ToUnixTimeMilliseconds(), shipped[0].TimeUnixMs);
        Assert.InRange(shipped[1].TimeUnixMs, DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeMilliseconds(), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }
}
