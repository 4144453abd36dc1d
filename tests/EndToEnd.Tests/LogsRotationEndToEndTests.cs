using System.Diagnostics;
using Fleet.EndToEnd.Tests.Infrastructure;
using Fleet.Testing;

namespace Fleet.EndToEnd.Tests;

/// <summary>Rotation while a real agent tails the file: copytruncate, and Debian's logrotate with the runbook's config.</summary>
public sealed partial class LogsEndToEndTests
{
    [Fact]
    public async Task CopyTruncate_WhileWriting_EveryLineStoredOnce_InOrderPerFile()
    {
        var logs = LogDirectory("ct-logs");
        var log = Path.Combine(logs, "app.log");
        StartAgent(LogsE2E.Agent("e2e-copytruncate", [LogsE2E.FileSource("app", logs + "/*.log")]));
        await using var writer = new LineWriter(log, "ct");
        await writer.WriteAsync(20);
        await Eventually.UntilAsync(() => LogsE2E.NewestAsync(Coordinator, "e2e-copytruncate"), m => m is not null, "the agent tailing the file"); // not rotated away before it started
        writer.Start(total: 3000, every: TimeSpan.FromMilliseconds(10));

        for (var rotation = 1; rotation <= 2; rotation++)
        {
            var at = rotation * 1000;
            await Eventually.UntilAsync(() => writer.Written >= at, $"{at} lines written");
            // copytruncate, between two writes (lines written between logrotate's copy and its truncation are lost by
            // copytruncate itself, whatever reads the file): the copy is not matched by the glob.
            await writer.RotateAsync(() =>
            {
                File.Copy(log, $"{log}.{rotation}");
                using var stream = new FileStream(log, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
                stream.SetLength(0);
                return Task.CompletedTask;
            });
        }
        await writer.Completion.DefaultTimeout();

        var last = writer.All[^1];
        await Eventually.UntilAsync(() => LogsE2E.NewestAsync(Coordinator, "e2e-copytruncate"), m => m == last, "the last line stored", TimeSpan.FromSeconds(45));
        var stored = (await LogsE2E.StoredAsync(Coordinator, "e2e-copytruncate")).Select(e => e.Message).ToList();
        LogsE2E.AssertExactlyOnceInOrder(writer.All.Order(StringComparer.Ordinal).ToList(), stored.Order(StringComparer.Ordinal).ToList(), "all lines");
        for (var g = 0; g < writer.Generations.Count; g++)
            LogsE2E.AssertExactlyOnceInOrder(writer.Generations[g], stored.Where(m => m.StartsWith($"ct g{g} ", StringComparison.Ordinal)).ToList(), $"file generation {g}");
    }

    [Fact]
    public async Task DebianLogrotate_RunbookConfig_Twice_WhileWriting_EveryLineStoredOnce_InOrderPerFile()
    {
        var logs = LogDirectory("lr-logs");
        var log = Path.Combine(logs, "app.log");
        // The runbook's policy for /var/log/app (no copytruncate: rename, the app reopens the path).
        var config = Path.Combine(LogDirectory("lr-conf"), "app.conf");
        File.WriteAllText(config, $$"""
            {{log}} {
                daily
                rotate 30
                compress
                delaycompress
                missingok
                notifempty
            }

            """);
        var state = Path.Combine(LogDirectory("lr-conf"), "logrotate.status");
        StartAgent(LogsE2E.Agent("e2e-logrotate", [LogsE2E.FileSource("app", logs + "/*.log")]));
        await using var writer = new LineWriter(log, "lr");
        await writer.WriteAsync(20);
        await Eventually.UntilAsync(() => LogsE2E.NewestAsync(Coordinator, "e2e-logrotate"), m => m is not null, "the agent tailing the file"); // not rotated away before it started
        writer.Start(total: 3000, every: TimeSpan.FromMilliseconds(10));

        for (var rotation = 1; rotation <= 2; rotation++)
        {
            var at = rotation * 1000;
            await Eventually.UntilAsync(() => writer.Written >= at, $"{at} lines written");
            await writer.RotateAsync(() => RunLogrotateAsync(config, state));
        }
        await writer.Completion.DefaultTimeout();

        var last = writer.All[^1];
        await Eventually.UntilAsync(() => LogsE2E.NewestAsync(Coordinator, "e2e-logrotate"), m => m == last, "the last line stored", TimeSpan.FromSeconds(45));
        var stored = (await LogsE2E.StoredAsync(Coordinator, "e2e-logrotate")).Select(e => e.Message).ToList();
        LogsE2E.AssertExactlyOnceInOrder(writer.All.Order(StringComparer.Ordinal).ToList(), stored.Order(StringComparer.Ordinal).ToList(), "all lines");
        for (var g = 0; g < writer.Generations.Count; g++)
            LogsE2E.AssertExactlyOnceInOrder(writer.Generations[g], stored.Where(m => m.StartsWith($"lr g{g} ", StringComparison.Ordinal)).ToList(), $"file generation {g}");
        // logrotate really rotated: the first file is compressed now (delaycompress), the second one is not yet.
        Assert.True(File.Exists(log + ".2.gz"), string.Join(", ", Directory.GetFiles(logs).Select(Path.GetFileName)));
        Assert.True(File.Exists(log + ".1"));
    }

    static async Task RunLogrotateAsync(string config, string state)
    {
        var info = new ProcessStartInfo("/usr/sbin/logrotate") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-f", "-s", state, config }) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(process.ExitCode == 0, $"logrotate exited {process.ExitCode}: {await output}{await error}");
    }
}
