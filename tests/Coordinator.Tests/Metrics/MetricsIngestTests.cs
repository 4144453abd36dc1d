using System.Diagnostics;
using Fleet.Coordinator.Metrics;
using Fleet.Coordinator.Storage;
using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Coordinator.Tests.Metrics;

public sealed class MetricsIngestTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    public static TheoryData<Store> Stores => new() { Store.Sqlite, Store.Postgres };

    CoordinatorFactory Coordinator(Store store, bool redis = false) =>
        new(store, store == Store.Postgres ? postgres.ConnectionString : null, redis);

    static MetricSample Sample(string name, double value, long ms, params (string, string)[] labels)
    {
        var s = new MetricSample { Name = name, Value = value, TimeUnixMs = ms };
        foreach (var (k, v) in labels) s.Labels[k] = v;
        return s;
    }

    static Batch MetricsBatch(ulong counter, params MetricSample[] samples) =>
        new() { Key = new BatchKey { Epoch = 42, Counter = counter }, Metrics = new MetricBatch { Samples = { samples } } };

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task MetricBatch_IsStoredOnce_OnRedelivery_AndItsLatestValuesAreServed(Store store)
    {
        using var coordinator = Coordinator(store, redis: store == Store.Postgres);
        var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id, "web-9"));
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var batch = MetricsBatch(1,
            Sample("cpu.usage", 0.25, now),
            Sample("disk.used_ratio", 0.5, now, ("mount", "/")),
            Sample("disk.used_ratio", 0.9, now, ("mount", "/var, \"log\"")));
        batch.Metrics.Probes.Add(new ProbeResult { Name = "app", Kind = "http", Ok = false, LatencyMs = 12.5, Reason = "status 500", TimeUnixMs = now });

        for (var i = 0; i < 2; i++)
        {
            await stream.SendAsync(new AgentMessage { Batch = batch });
            Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);
        }
        // An older batch replayed later (outbox after an outage) is stored but does not replace newer latest values.
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(2, Sample("cpu.usage", 0.99, now - 60_000)) });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);

        await using (var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext())
        {
            Assert.Equal(4, await db.Set<MetricSampleRecord>().CountAsync(m => m.AgentId == id));
            Assert.Equal(1, await db.Set<ProbeResultRecord>().CountAsync(p => p.AgentId == id));
        }

        var api = new Protocol.V1.Metrics.MetricsClient(coordinator.Channel());
        var host = (await api.GetLatestMetricsAsync(new GetLatestMetricsRequest())).Hosts.Single(h => h.AgentId == id);
        Assert.Equal("web-9", host.Hostname);
        Assert.Equal(AgentStatus.Online, host.Status);
        Assert.Equal(0.25, host.Samples.Single(s => s.Name == "cpu.usage").Value);
        Assert.Equal(0.9, host.Samples.Single(s => s.Name == "disk.used_ratio" && s.Labels["mount"] == "/var, \"log\"").Value);
        Assert.All(host.Samples, s => Assert.False(s.Stale));
        var probe = Assert.Single(host.Probes);
        Assert.False(probe.Ok);
        Assert.Equal("status 500", probe.Reason);
    }

    [Fact]
    public async Task OnlineHost_WithOldSamples_ShowsNoData_NotOffline()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));
        var old = DateTimeOffset.UtcNow.AddMinutes(-10).ToUnixTimeMilliseconds();
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(1, Sample("memory.used_ratio", 0.4, old)) });
        await stream.ReceiveAsync();

        var host = (await new Protocol.V1.Metrics.MetricsClient(coordinator.Channel()).GetLatestMetricsAsync(new GetLatestMetricsRequest())).Hosts.Single(h => h.AgentId == id);
        Assert.Equal(AgentStatus.Online, host.Status);
        Assert.True(host.Samples.Single().Stale);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task History_IsQueryable_RawAndByStep(Store store)
    {
        using var coordinator = Coordinator(store);
        var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));
        var start = new DateTimeOffset(DateTime.UtcNow.Date.AddHours(-1), TimeSpan.Zero).ToUnixTimeMilliseconds();
        var samples = Enumerable.Range(0, 12).Select(i => Sample("load.1m", i, start + i * 10_000)).ToArray(); // 2 minutes, every 10 s
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(1, samples) });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);

        var api = new Protocol.V1.Metrics.MetricsClient(coordinator.Channel());
        var from = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(start));
        var to = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(start + 3_600_000));
        var raw = await api.QueryMetricsAsync(new QueryMetricsRequest { AgentId = id, Name = "load.1m", From = from, To = to });
        Assert.Equal(12, Assert.Single(raw.Series).Points.Count);
        var perMinute = await api.QueryMetricsAsync(new QueryMetricsRequest { AgentId = id, Name = "load.1m", From = from, To = to, StepSeconds = 60 });
        Assert.Equal([2.5, 8.5], Assert.Single(perMinute.Series).Points.Select(p => p.Value)); // avg(0..5), avg(6..11)

        var bad = await Assert.ThrowsAsync<RpcException>(() => api.QueryMetricsAsync(new QueryMetricsRequest { AgentId = id, Name = "" }).ResponseAsync);
        Assert.Contains("name", bad.Status.Detail);
        var badStep = await Assert.ThrowsAsync<RpcException>(() => api.QueryMetricsAsync(new QueryMetricsRequest { AgentId = id, Name = "x", StepSeconds = -1 }).ResponseAsync);
        Assert.Contains("step_seconds", badStep.Status.Detail);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task ASampleKeySentTwice_InOneBatchOrInALaterOne_IsStoredOnce_AndTheStreamGoesOn(Store store)
    {
        using var coordinator = Coordinator(store);
        var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        // Two collections stamped with one millisecond (an agent's mistake): one key, two values; then the key again later.
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(1, Sample("bench_alert", 0, now, ("n", "1")), Sample("bench_alert", 1, now, ("n", "1"))) });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(2, Sample("bench_alert", 1, now, ("n", "1")), Sample("bench_alert", 1, now + 1, ("n", "1"))) });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);

        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        var stored = await db.Set<MetricSampleRecord>().Where(m => m.AgentId == id).OrderBy(m => m.Time).Select(m => m.Value).ToListAsync();
        Assert.Equal([0.0, 1.0], stored); // the first value of the repeated key wins, the next millisecond is its own sample
    }

    [Fact]
    public async Task NonFiniteValue_IsRejectedNamingTheField_AndNothingIsStored()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(1, Sample("cpu.usage", 0.1, 1), Sample("cpu.usage", double.NaN, 2)) });
        var reply = await stream.ReceiveAsync();
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Reject, reply.BodyCase);
        Assert.Contains("metrics.samples.value", reply.Reject.Reason);
        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        Assert.Equal(0, await db.Set<MetricSampleRecord>().CountAsync(m => m.AgentId == id));
    }

    [Fact]
    public async Task PrometheusEndpoint_PassesPromtoolCheck()
    {
        using var coordinator = Coordinator(Store.Sqlite);
        var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id, "web-\"quoted\""));
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var batch = MetricsBatch(1, Sample("cpu.usage", 0.3, now), Sample("disk.used_ratio", 0.7, now, ("mount", "/data")), Sample("network.rx_bytes_per_second", 1e6, now, ("interface", "eth0")));
        batch.Metrics.Probes.Add(new ProbeResult { Name = "db", Kind = "postgres", Ok = true, LatencyMs = 3, TimeUnixMs = now });
        await stream.SendAsync(new AgentMessage { Batch = batch });
        await stream.ReceiveAsync();

        using var http = coordinator.CreateClient();
        var text = await http.GetStringAsync("/metrics");
        Assert.Contains("fleet_host_cpu_usage{host=\"web-\\\"quoted\\\"\"", text);
        Assert.Contains("fleet_host_disk_used_ratio{", text);
        Assert.Contains("mount=\"/data\"", text);
        Assert.Contains("fleet_probe_success{", text);
        Assert.Contains("fleet_agent_up{", text);

        var promtool = new ProcessStartInfo("promtool", "check metrics") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(promtool)!;
        await process.StandardInput.WriteAsync(text);
        process.StandardInput.Close();
        var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().DefaultTimeout();
        Assert.True(process.ExitCode == 0, "promtool check metrics failed:\n" + output + "\n" + text);
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task ASampleKeyStoredByAnEarlierBatch_IsCountedOnceInTheRollups(Store store)
    {
        using var coordinator = Coordinator(store);
        var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));
        var minute = new DateTimeOffset(DateTime.UtcNow.Date.AddHours(-2), TimeSpan.Zero).ToUnixTimeMilliseconds();
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(1, Sample("load.1", 3, minute + 1_000), Sample("load.1", 4, minute + 2_000)) });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);
        // A new batch (not a redelivery) repeats the key at +2 s with another value, and brings one new sample.
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(2, Sample("load.1", 40, minute + 2_000), Sample("load.1", 5, minute + 3_000)) });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);
        // And a batch of nothing but repeats.
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(3, Sample("load.1", 30, minute + 1_000)) });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);

        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        var raw = await db.Set<MetricSampleRecord>().Where(r => r.AgentId == id).OrderBy(r => r.Time).Select(r => r.Value).ToListAsync();
        Assert.Equal([3.0, 4.0, 5.0], raw);
        var rollups = await db.Set<MetricRollupRecord>().Where(r => r.AgentId == id).OrderBy(r => r.Resolution).ToListAsync();
        Assert.Equal(2, rollups.Count);
        foreach (var r in rollups)
            Assert.Equal((3.0, 5.0, 12.0, 3L, 5.0), (r.Min, r.Max, r.Sum, r.Count, r.Last));
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task Rollups_MatchHandComputedValues_AcrossBatches(Store store)
    {
        using var coordinator = Coordinator(store);
        var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
        await using var stream = RawAgentStream.Open(coordinator.Channel());
        await stream.HelloAsync(RawAgentStream.Hello(id));
        var hour = new DateTimeOffset(DateTime.UtcNow.Date.AddHours(-3), TimeSpan.Zero).ToUnixTimeMilliseconds();
        // Minute 0: 4, 1, 9 (last = 9 at +50 s, sent in the first batch) and 2 at +30 s in the second batch. Minute 1: 5.
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(1, Sample("disk.used_ratio", 4, hour + 10_000, ("mount", "/")), Sample("disk.used_ratio", 1, hour + 20_000, ("mount", "/")), Sample("disk.used_ratio", 9, hour + 50_000, ("mount", "/"))) });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(2, Sample("disk.used_ratio", 2, hour + 30_000, ("mount", "/")), Sample("disk.used_ratio", 5, hour + 70_000, ("mount", "/"))) });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);
        // Redelivery of the second batch changes nothing.
        await stream.SendAsync(new AgentMessage { Batch = MetricsBatch(2, Sample("disk.used_ratio", 2, hour + 30_000, ("mount", "/")), Sample("disk.used_ratio", 5, hour + 70_000, ("mount", "/"))) });
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Ack, (await stream.ReceiveAsync()).BodyCase);

        await using var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        var rollups = await db.Set<MetricRollupRecord>().Where(r => r.AgentId == id).OrderBy(r => r.Resolution).ThenBy(r => r.Bucket).ToListAsync();
        Assert.Equal(3, rollups.Count);
        var minute0 = rollups[0];
        Assert.Equal((1.0, 9.0, 16.0, 4L, 9.0), (minute0.Min, minute0.Max, minute0.Sum, minute0.Count, minute0.Last));
        var minute1 = rollups[1];
        Assert.Equal((5.0, 5.0, 5.0, 1L, 5.0), (minute1.Min, minute1.Max, minute1.Sum, minute1.Count, minute1.Last));
        var hourly = rollups[2];
        Assert.Equal(3600, hourly.Resolution);
        Assert.Equal((1.0, 9.0, 21.0, 5L, 5.0), (hourly.Min, hourly.Max, hourly.Sum, hourly.Count, hourly.Last));
        Assert.Equal("mount=/", hourly.Labels);

        var api = new Protocol.V1.Metrics.MetricsClient(coordinator.Channel());
        var from = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(hour));
        var to = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(hour + 3_599_000));
        var perHour = await api.QueryMetricsAsync(new QueryMetricsRequest { AgentId = id, Name = "disk.used_ratio", From = from, To = to, StepSeconds = 3600 });
        Assert.Equal(21.0 / 5, Assert.Single(Assert.Single(perHour.Series).Points).Value, 9);
    }

    [Fact]
    public async Task Retention_DeletesOnlyWhatIsOld()
    {
        using var coordinator = Coordinator(Store.Sqlite).With("Fleet:Metrics:RetentionInterval", "01:00:00");
        var id = "agent-" + Guid.NewGuid().ToString("N")[..10];
        var now = DateTime.UtcNow;
        await using (var db = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext())
        {
            db.Set<MetricSampleRecord>().AddRange(
                new MetricSampleRecord { AgentId = id, Name = "cpu.usage", Time = now.AddHours(-49), Value = 1 },
                new MetricSampleRecord { AgentId = id, Name = "cpu.usage", Time = now.AddHours(-47), Value = 2 });
            db.Set<MetricRollupRecord>().AddRange(
                new MetricRollupRecord { AgentId = id, Name = "cpu.usage", Resolution = 60, Bucket = now.AddDays(-31) },
                new MetricRollupRecord { AgentId = id, Name = "cpu.usage", Resolution = 60, Bucket = now.AddDays(-29) },
                new MetricRollupRecord { AgentId = id, Name = "cpu.usage", Resolution = 3600, Bucket = now.AddDays(-31) },
                new MetricRollupRecord { AgentId = id, Name = "cpu.usage", Resolution = 3600, Bucket = now.AddDays(-366) });
            db.Set<ProbeResultRecord>().Add(new ProbeResultRecord { AgentId = id, Name = "db", Time = now.AddHours(-49) });
            await db.SaveChangesAsync();
        }

        var deleted = await coordinator.Services.GetRequiredService<MetricsRetention>().RunOnceAsync(CancellationToken.None);

        Assert.Equal((1, 1, 1, 1), deleted);
        await using var check = coordinator.Services.GetRequiredService<IDbContextFactory<FleetDbContext>>().CreateDbContext();
        Assert.Equal([2.0], await check.Set<MetricSampleRecord>().Where(m => m.AgentId == id).Select(m => m.Value).ToListAsync());
        Assert.Equal(2, await check.Set<MetricRollupRecord>().CountAsync(r => r.AgentId == id));
    }
}
