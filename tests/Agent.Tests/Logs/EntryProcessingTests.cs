using System.Diagnostics;
using Fleet.Agent.Logs;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Logs;

public sealed class EntryProcessingTests
{
    static async Task<LogHarness> StartAsync(Func<string, LogSourceSettings> source, Action<LogSettings>? configure = null)
    {
        var h = new LogHarness();
        h.Options.Logs.Sources.Add(source(h.LogDirectory + "/*.log"));
        configure?.Invoke(h.Options.Logs);
        await h.StartAsync();
        return h;
    }

    [Fact]
    public async Task MultilineStackTrace_IsJoinedIntoOneEntry()
    {
        await using var h = await StartAsync(glob => new LogSourceSettings { Name = "app", Path = glob, MultilineStart = LogSettings.CreateRegex(@"^\d{4}-") });
        LogHarness.Append(h.Log("app.log"),
            "2024-05-01 10:00:00 ERROR Unhandled exception",
            "System.InvalidOperationException: boom",
            "   at App.Handler.Run()",
            "2024-05-01 10:00:01 INFO recovered");

        var shipped = await h.ShippedAsync("2024-05-01 10:00:01 INFO recovered");
        Assert.Equal(2, shipped.Count);
        Assert.Equal("2024-05-01 10:00:00 ERROR Unhandled exception\nSystem.InvalidOperationException: boom\n   at App.Handler.Run()", shipped[0].Message);
        Assert.Equal("error", shipped[0].Severity);
        Assert.Equal(0UL, shipped[0].Offset);
        Assert.Equal("info", shipped[1].Severity);
    }

    [Fact]
    public async Task IncludeAndExclude_FilterEntries()
    {
        await using var h = await StartAsync(glob => new LogSourceSettings
        {
            Name = "app", Path = glob, Include = LogSettings.CreateRegex("ERROR|WARN"), Exclude = LogSettings.CreateRegex("healthcheck"),
        });
        LogHarness.Append(h.Log("app.log"), "INFO started", "ERROR healthcheck failed once", "WARN slow query", "ERROR db down");

        var shipped = await h.ShippedAsync("ERROR db down");
        Assert.Equal(["WARN slow query", "ERROR db down"], shipped.Select(e => e.Message).ToArray());
    }

    [Fact]
    public async Task Severity_IsParsedFromTheLine()
    {
        await using var h = await StartAsync(glob => new LogSourceSettings { Name = "app", Path = glob });
        LogHarness.Append(h.Log("app.log"), "FATAL out of memory", "WARNING disk 91%", "NOTICE config reloaded", "TRACE enter", "plain text");

        var shipped = await h.ShippedAsync("plain text");
        Assert.Equal(["error", "warn", "info", "debug", ""], shipped.Select(e => e.Severity).ToArray());
    }

    [Fact]
    public async Task FixedSeverity_OverridesTheLine()
    {
        await using var h = await StartAsync(glob => new LogSourceSettings { Name = "app", Path = glob, Severity = "error" });
        LogHarness.Append(h.Log("app.log"), "INFO but from the error log");

        var shipped = await h.ShippedAsync("INFO but from the error log");
        Assert.Equal("error", shipped.Single().Severity);
    }

    [Fact]
    public async Task NamedGroups_BecomeFields()
    {
        await using var h = await StartAsync(glob => new LogSourceSettings { Name = "auth", Path = glob, Pattern = LogSettings.CreateRegex(@"Failed password for root from (?<ip>\S+)") });
        LogHarness.Append(h.Log("auth.log"), "May  1 10:00:00 web-1 sshd[811]: Failed password for root from 203.0.113.9 port 52113 ssh2", "Accepted publickey for deploy");

        var shipped = await h.ShippedAsync("Accepted publickey for deploy");
        Assert.Equal("203.0.113.9", shipped[0].Fields["ip"]);
        Assert.Empty(shipped[1].Fields);
    }

    [Fact]
    public async Task Secrets_AreRedactedBeforeShipping()
    {
        await using var h = await StartAsync(glob => new LogSourceSettings { Name = "app", Path = glob },
            logs => logs.Redact.Add(LogSettings.CreateRegex(@"card=\d+")));
        LogHarness.Append(h.Log("app.log"),
            "login user=bob password=hunter2 ok",
            "GET /api Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
            "charged card=4111111111111111 token=abc123");

        var shipped = await h.ShippedUntilAsync(s => s.Count >= 3);
        var text = string.Join("\n", shipped.Select(e => e.Message));
        Assert.DoesNotContain("hunter2", text, StringComparison.Ordinal);
        Assert.DoesNotContain("eyJhbGciOiJIUzI1NiJ9", text, StringComparison.Ordinal);
        Assert.DoesNotContain("4111111111111111", text, StringComparison.Ordinal);
        Assert.DoesNotContain("abc123", text, StringComparison.Ordinal);
        Assert.Equal("login user=bob password=*** ok", shipped[0].Message);
    }

    [Fact]
    public async Task HostileRegex_TimesOut_WithoutHangingTheTailer()
    {
        await using var h = await StartAsync(glob => new LogSourceSettings { Name = "app", Path = glob, Exclude = LogSettings.CreateRegex(@"^(a+)+$") });
        var clock = Stopwatch.StartNew();
        LogHarness.Append(h.Log("app.log"), new string('a', 40) + "!", "after the hostile line");

        var shipped = await h.ShippedAsync("after the hostile line");
        Assert.Equal(2, shipped.Count); // a timed-out exclude is "no match": the line is kept
        Assert.True(h.Counters.RegexTimeouts >= 1);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
    }
}
