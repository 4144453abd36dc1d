using System.Text;
using Fleet.Agent.Probes;

namespace Fleet.Agent.Tests.Probes;

public sealed class RedisInfoTests
{
    // The replies of INFO memory and INFO stats as Redis 7.0.15 sends them (CRLF lines, "# Section" headers), trimmed;
    // the counters are set to non-zero values so every reported value is exercised.
    const string InfoMemory =
        "# Memory\r\nused_memory:964440\r\nused_memory_human:941.84K\r\nused_memory_rss:6631424\r\nused_memory_rss_human:6.32M\r\n" +
        "used_memory_peak:964440\r\nused_memory_peak_perc:100.01%\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n" +
        "allocator_frag_ratio:1.08\r\nallocator_frag_bytes:140064\r\nmem_fragmentation_ratio:7.56\r\nmem_fragmentation_bytes:5754768\r\n" +
        "mem_allocator:jemalloc-5.3.0\r\nactive_defrag_running:0\r\nlazyfree_pending_objects:0\r\n";

    const string InfoStats =
        "# Stats\r\ntotal_connections_received:7\r\ntotal_commands_processed:5\r\ninstantaneous_ops_per_sec:0\r\n" +
        "instantaneous_input_kbps:0.00\r\nrejected_connections:0\r\nexpired_keys:1742\r\nexpired_stale_perc:0.00\r\n" +
        "expired_time_cap_reached_count:0\r\nevicted_keys:31\r\nevicted_clients:0\r\nkeyspace_hits:900\r\nkeyspace_misses:100\r\n" +
        "pubsub_channels:0\r\nactive_defrag_hits:0\r\nactive_defrag_misses:0\r\nactive_defrag_key_hits:0\r\nactive_defrag_key_misses:0\r\n" +
        "total_error_replies:0\r\n";

    static Dictionary<string, double> Values(string info)
    {
        var values = new Dictionary<string, double>();
        RedisInfo.AddValues(RedisInfo.Parse(info), values);
        return values;
    }

    [Fact]
    public void Parse_ReportsMemoryAndStats_FromRecordedInfo()
    {
        var values = Values(InfoMemory + InfoStats);

        Assert.Equal(964440, values["redis.used_memory_bytes"]);
        Assert.Equal(7.56, values["redis.mem_fragmentation_ratio"]);
        Assert.Equal(0.9, values["redis.keyspace_hit_ratio"], 10);
        Assert.Equal(31, values["redis.evicted_keys"]);
        Assert.Equal(1742, values["redis.expired_keys"]);
        Assert.Equal(5, values.Count);
    }

    [Fact]
    public void Parse_LeavesOutTheHitRatio_WhenThereWereNeitherHitsNorMisses()
    {
        var values = Values(InfoStats.Replace("keyspace_hits:900", "keyspace_hits:0", StringComparison.Ordinal)
            .Replace("keyspace_misses:100", "keyspace_misses:0", StringComparison.Ordinal));

        Assert.False(values.ContainsKey("redis.keyspace_hit_ratio"));
        Assert.Equal(31, values["redis.evicted_keys"]);
    }

    [Fact]
    public void Parse_SkipsMissingAndNonNumericFields()
    {
        var values = Values("# Memory\nused_memory:lots\nmem_fragmentation_ratio:nan\nno colon here\n:empty key\n");

        Assert.Empty(values);
    }

    [Fact]
    public async Task Resp_ReadsRepliesSplitAcrossManySmallReads()
    {
        var wire = "+PONG\r\n-ERR unknown command\r\n:42\r\n$-1\r\n" + $"${Encoding.UTF8.GetByteCount(InfoMemory)}\r\n{InfoMemory}\r\n";
        var connection = new RespConnection(new TrickleStream(Encoding.UTF8.GetBytes(wire)));

        Assert.Equal(new RespReply('+', "PONG"), await connection.ReadAsync(CancellationToken.None));
        var error = await connection.ReadAsync(CancellationToken.None);
        Assert.True(error.IsError);
        Assert.Equal("ERR unknown command", error.Text);
        Assert.Equal(new RespReply(':', "42"), await connection.ReadAsync(CancellationToken.None));
        Assert.Equal(new RespReply('$', null), await connection.ReadAsync(CancellationToken.None));
        Assert.Equal(InfoMemory, (await connection.ReadAsync(CancellationToken.None)).Text);
        await Assert.ThrowsAsync<EndOfStreamException>(async () => await connection.ReadAsync(CancellationToken.None));
    }

    [Fact]
    public async Task Resp_SendsCommandsAsArraysOfBulkStrings()
    {
        using var sent = new MemoryStream();
        var connection = new RespConnection(sent);

        await connection.SendAsync([["AUTH", "user", "pässword"], ["PING"]], CancellationToken.None);

        Assert.Equal("*3\r\n$4\r\nAUTH\r\n$4\r\nuser\r\n$9\r\npässword\r\n*1\r\n$4\r\nPING\r\n", Encoding.UTF8.GetString(sent.ToArray()));
    }

    /// <summary>Returns at most three bytes per read, like a slow network.</summary>
    sealed class TrickleStream(byte[] data) : MemoryStream(data)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(3, buffer.Length)], cancellationToken);
    }
}
