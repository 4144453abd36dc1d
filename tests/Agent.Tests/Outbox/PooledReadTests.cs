using Fleet.Agent.Outbox;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Outbox;

public sealed class PooledReadTests
{
    [Fact]
    public async Task Pooled_read_hands_out_the_same_records_in_order_and_release_is_idempotent()
    {
        using var dir = new TempDirectory();
        await using var outbox = OutboxTestSupport.Open(dir.Path);
        var first = await outbox.AppendOk(OutboxTestSupport.Payload(1, 300_000));
        var second = await outbox.AppendOk(OutboxTestSupport.Payload(2, 10));

        var a = await outbox.ReadNextPooledAsync(CancellationToken.None).AsTask().DefaultTimeout();
        Assert.Equal(first, a.Key);
        Assert.Equal(OutboxTestSupport.Payload(1, 300_000), a.Payload.ToArray());
        DurableOutbox.Release(a);
        DurableOutbox.Release(a);
        var b = await outbox.ReadNextPooledAsync(CancellationToken.None).AsTask().DefaultTimeout();
        outbox.Rewind();
        var again = await outbox.Next();

        Assert.Equal(second, b.Key);
        Assert.Equal(OutboxTestSupport.Payload(2, 10), b.Payload.ToArray());
        Assert.Equal(first, again.Key);
        Assert.Equal(OutboxTestSupport.Payload(1, 300_000), again.Payload.ToArray());
        DurableOutbox.Release(again); // not pooled: nothing to hand back
    }
}
