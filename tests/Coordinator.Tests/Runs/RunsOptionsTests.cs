using Fleet.Coordinator.Tests.Infrastructure;

namespace Fleet.Coordinator.Tests.Runs;

public sealed class RunsOptionsTests
{
    [Theory]
    [InlineData("Fleet:Runs:EngineInterval", "00:00:00", "Fleet:Runs:EngineInterval")]
    [InlineData("Fleet:Runs:DefaultDeliveryTimeout", "-00:00:01", "Fleet:Runs:DefaultDeliveryTimeout")]
    [InlineData("Fleet:Runs:InlineOutputBytes", "10", "InlineOutputBytes")]
    public void BadRunsConfiguration_FailsStart_NamingTheKey(string key, string value, string named)
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite).With(key, value);
        var error = Assert.ThrowsAny<Exception>(() => coordinator.CreateClient());
        var messages = new List<string>();
        for (Exception? x = error; x is not null; x = x.InnerException)
        {
            messages.Add(x.Message);
            if (x is AggregateException all) messages.AddRange(all.InnerExceptions.Select(i => i.Message));
        }
        Assert.Contains(messages, m => m.Contains(named, StringComparison.Ordinal));
    }
}
