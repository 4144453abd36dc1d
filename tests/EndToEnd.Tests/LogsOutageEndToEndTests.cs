using System.Diagnostics;
using Fleet.EndToEnd.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.EndToEnd.Tests;

/// <summary>The coordinator away (an outage, a full outbox) and the journal source across an agent kill -9.</summary>
public sealed partial class LogsEndToEndTests
{
    [Fact]
    public async Task CoordinatorDown10s_While100000LinesAreWritten_AllStoredOnce_InOrder()
    {
        const int total = 100_000;
        var logs = LogDirectory("down-logs");
        var log = Path.Combine(logs, "app.log");
        StartAgent(LogsE2E.Agent("e2e-outage", [LogsE2E.FileSource("app", logs + "/*.log")]));
        await Eventually.UntilAsync(Coordinator.AgentStatusesAsync, s => s.GetValueOrDefault("e2e-outage") == "AGENT_STATUS_ONLINE", "the agent online");

        await Coordinator.StopAsync();
        var down = Stopwatch.StartNew();
        await using (var writer = new LineWriter(log, "down", linesPerWrite: 2_500))
        {
            writer.Start(total, every: TimeSpan.FromMilliseconds(260)); // 40 writes: a little over 10 s
            await writer.Completion.DefaultTimeout(TimeSpan.FromSeconds(60));
        }
        Assert.True(down.Elapsed >= TimeSpan.FromSeconds(10), $"the coordinator was down only {down.Elapsed}");
        await Coordinator.StartAsync();

        var expected = Enumerable.Range(0, total).Select(i => LineWriter.Line("down", 0, i)).ToList();
        await Eventually.UntilAsync(() => LogsE2E.NewestAsync(Coordinator, "e2e-outage"), m => m == expected[^1], "the last line stored", TimeSpan.FromSeconds(60));
        var stored = (await LogsE2E.StoredAsync(Coordinator, "e2e-outage")).Select(e => e.Message).ToList();
        LogsE2E.AssertExactlyOnceInOrder(expected, stored, "lines written during the outage");
    }

    [Fact]
    public async Task OutboxFull_WhileTheCoordinatorIsDown_DropsTheOldest_CountsAndReportsIt_StoresTheRestOnce()
    {
        const int total = 20_000; // ~2 MB of entries into a 1 MiB outbox
        var logs = LogDirectory("full-logs");
        var log = Path.Combine(logs, "app.log");
        var agent = StartAgent(LogsE2E.Agent("e2e-outbox-full", [LogsE2E.FileSource("app", logs + "/*.log")],
            more: new()
            {
                ["outboxMaxMegabytes"] = 1,
                ["metricsFlushSeconds"] = 1,
                ["collectors"] = new Dictionary<string, object> { ["memory"] = new Dictionary<string, object> { ["intervalSeconds"] = 1 } },
            },
            logs: new() { ["batchMaxBytes"] = 16 * 1024 }));
        await Eventually.UntilAsync(Coordinator.AgentStatusesAsync, s => s.GetValueOrDefault("e2e-outbox-full") == "AGENT_STATUS_ONLINE", "the agent online");

        await Coordinator.StopAsync();
        await using (var writer = new LineWriter(log, "full", linesPerWrite: 1_000))
        {
            writer.Start(total, every: TimeSpan.FromMilliseconds(20));
            await writer.Completion.DefaultTimeout();
        }
        await Eventually.UntilAsync(() => agent.Process.Output.Contains("dropped the oldest segment", StringComparison.Ordinal), "the outbox at its bound dropping its oldest segment\n" + agent.Process.Output);
        await Coordinator.StartAsync();

        var expected = Enumerable.Range(0, total).Select(i => LineWriter.Line("full", 0, i)).ToList();
        await Eventually.UntilAsync(() => LogsE2E.NewestAsync(Coordinator, "e2e-outbox-full"), m => m == expected[^1], "the last line stored", TimeSpan.FromSeconds(60));
        var stored = (await LogsE2E.StoredAsync(Coordinator, "e2e-outbox-full")).Select(e => e.Message).ToList();

        // What was not dropped is stored once and in order: the stored lines are the written ones, minus some.
        Assert.InRange(stored.Count, 1, total - 1);
        var kept = expected.Intersect(stored).ToList(); // in written order
        LogsE2E.AssertExactlyOnceInOrder(kept, stored, "the lines not dropped");

        using var channel = Coordinator.Channel();
        var events = await Eventually.UntilAsync(
            async () => (await new Agents.AgentsClient(channel).ListAgentEventsAsync(new ListAgentEventsRequest { AgentId = "e2e-outbox-full", Kind = "outbox.dropped" })).Events,
            e => e.Count > 0, "an outbox.dropped event stored");
        var dropped = events.Sum(e => long.Parse(e.Attributes["dropped_records"], System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(dropped > 0);
        Assert.True(long.Parse(events[0].Attributes["dropped_records_total"], System.Globalization.CultureInfo.InvariantCulture) >= dropped);

        var metric = await Eventually.UntilAsync(
            async () => (await new Metrics.MetricsClient(channel).QueryMetricsAsync(new QueryMetricsRequest
            {
                AgentId = "e2e-outbox-full", Name = "agent.outbox.dropped_records", From = Timestamp.FromDateTime(DateTime.UtcNow.AddMinutes(-10)),
            })).Series.SelectMany(s => s.Points).Select(p => p.Value).DefaultIfEmpty(0).Max(),
            v => v > 0, "agent.outbox.dropped_records stored as a metric");
        Assert.True(metric > 0);
        Assert.False(agent.Process.HasExited);
    }

    [Fact]
    public async Task JournalSource_StandInJournalctl_AcrossAnAgentKill9_EveryEntryStoredOnce_InOrder_Redacted()
    {
        var journalDir = LogDirectory("journal");
        var journal = Path.Combine(journalDir, "entries.jsonl");
        File.WriteAllText(journal, "");
        var bin = LogDirectory("journal-bin");
        var script = Path.Combine(bin, "journalctl");
        // journalctl -o json --follow --after-cursor C: entry N of the file has cursor "s=e2e;i=N"; --pid ends tail with the agent.
        File.WriteAllText(script, $$"""
            #!/bin/sh
            after=""; all=""
            while [ $# -gt 0 ]; do
              case "$1" in
                --after-cursor) after="$2"; shift ;;
                --lines=all) all=1 ;;
              esac
              shift
            done
            if [ -n "$after" ]; then start=$(( ${after##*i=} + 1 ))
            elif [ -n "$all" ]; then start=1
            else start=$(( $(wc -l < "{{journal}}") + 1 )); fi
            exec tail -n +$start --pid=$PPID -F "{{journal}}"

            """);
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var path = bin + ":" + Environment.GetEnvironmentVariable("PATH");
        var agent = StartAgent(LogsE2E.Agent("e2e-journal",
            [new() { ["name"] = "app", ["journal"] = "interview-app.service", ["startAt"] = "beginning" }],
            environment: new Dictionary<string, string?> { ["PATH"] = path }));

        var written = new List<string>();
        void Write(int from, int to)
        {
            var lines = new List<string>();
            for (var i = from; i < to; i++)
            {
                var message = i switch
                {
                    7 => $"journal {i:D5} login password=hunter2 accepted",
                    8 => $"journal {i:D5} GET /api Authorization: Bearer eyJhbGciOi.secret-token",
                    _ => $"journal {i:D5} request served",
                };
                written.Add(message);
                var micros = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000 + i;
                lines.Add($$"""{"__CURSOR":"s=e2e;i={{i + 1}}","__REALTIME_TIMESTAMP":"{{micros}}","PRIORITY":"6","_SYSTEMD_UNIT":"interview-app.service","MESSAGE":"{{message}}"}""");
            }
            File.AppendAllText(journal, string.Concat(lines.Select(l => l + "\n")));
        }

        Write(0, 300);
        await Eventually.UntilAsync(() => LogsE2E.StoredAsync(Coordinator, "e2e-journal"), s => s.Count > 0, "the first entries stored");
        await agent.KillAsync(); // some entries acknowledged, others in flight or not read yet
        Write(300, 600);
        agent.Start();
        Write(600, 700);

        var redacted = written.Select(m => m.Replace("hunter2", "***", StringComparison.Ordinal).Replace("eyJhbGciOi.secret-token", "***", StringComparison.Ordinal)).ToList();
        await Eventually.UntilAsync(() => LogsE2E.NewestAsync(Coordinator, "e2e-journal"), m => m == redacted[^1], "the last entry stored", TimeSpan.FromSeconds(45));
        var stored = await LogsE2E.StoredAsync(Coordinator, "e2e-journal");
        LogsE2E.AssertExactlyOnceInOrder(redacted, stored.Select(e => e.Message).ToList(), "journal entries");
        Assert.Equal("journal 00007 login password=*** accepted", stored[7].Message);
        Assert.Equal("journal 00008 GET /api Authorization: Bearer ***", stored[8].Message);
        Assert.All(stored, e => Assert.Equal("journal:interview-app.service", e.Path));
        Assert.DoesNotContain(stored, e => e.Message.Contains("hunter2", StringComparison.Ordinal) || e.Message.Contains("secret-token", StringComparison.Ordinal));
    }
}
