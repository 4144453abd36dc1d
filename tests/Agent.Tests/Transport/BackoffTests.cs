using Fleet.Agent.Transport;

namespace Fleet.Agent.Tests.Transport;

public sealed class BackoffTests
{
    [Fact]
    public void Delays_Double_WithJitter_UpToTheCap()
    {
        var backoff = new Backoff(TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30), new Random(1));
        var steps = new[] { 500.0, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000 };
        foreach (var step in steps)
        {
            var delay = backoff.Next().TotalMilliseconds;
            Assert.InRange(delay, step / 2, step);
        }
    }

    [Fact]
    public void Delays_NeverExceedTheCap_AfterManyFailures()
    {
        var backoff = new Backoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30));
        for (var i = 0; i < 10_000; i++)
            Assert.InRange(backoff.Next(), TimeSpan.Zero, TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void Reset_StartsOverFromTheInitialDelay()
    {
        var backoff = new Backoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), new Random(2));
        for (var i = 0; i < 8; i++) backoff.Next();
        backoff.Reset();
        Assert.Equal(0, backoff.Failures);
        Assert.InRange(backoff.Next(), TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void Jitter_SpreadsAgentsThatFailTogether()
    {
        var delays = Enumerable.Range(0, 100)
            .Select(seed => { var b = new Backoff(TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(30), new Random(seed)); return b.Next().TotalMilliseconds; })
            .ToList();
        Assert.True(delays.Max() - delays.Min() > 2000, "100 agents should not retry within the same two seconds");
    }
}
