using Fleet.Coordinator.Tests.Infrastructure;
using Fleet.Protocol.V1;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Tests.Agents;

/// <summary>Collector intervals set centrally per tag reach the agents in the welcome and, on a change, at once.</summary>
public sealed class CentralConfigTests
{
    static string NewAgentId() => "agent-" + Guid.NewGuid().ToString("N")[..12];

    static CoordinatorFactory WithRules() => new CoordinatorFactory(Store.Sqlite)
        .With("Fleet:Agents:CollectorIntervals:0:Tags:role", "web")
        .With("Fleet:Agents:CollectorIntervals:0:Intervals:disk", "00:01:00")
        .With("Fleet:Agents:CollectorIntervals:0:Intervals:cpu", "00:00:30")
        .With("Fleet:Agents:CollectorIntervals:1:Tags:role", "web")
        .With("Fleet:Agents:CollectorIntervals:1:Tags:env", "prod")
        .With("Fleet:Agents:CollectorIntervals:1:Intervals:cpu", "00:00:05");

    [Fact]
    public async Task Welcome_CarriesTheIntervalsOfEveryMatchingRule_LaterRulesWinning()
    {
        using var coordinator = WithRules();
        await using var web = RawAgentStream.Open(coordinator.Channel());
        var hello = RawAgentStream.Hello(NewAgentId());
        hello.Tags["role"] = "web";
        hello.Tags["env"] = "prod";
        var welcome = await web.HelloAsync(hello);

        Assert.Equal(TimeSpan.FromMinutes(1), welcome.Config.CollectorIntervals["disk"].ToTimeSpan());
        Assert.Equal(TimeSpan.FromSeconds(5), welcome.Config.CollectorIntervals["cpu"].ToTimeSpan());

        await using var db = RawAgentStream.Open(coordinator.Channel());
        var dbHello = RawAgentStream.Hello(NewAgentId());
        dbHello.Tags["role"] = "db";
        var dbWelcome = await db.HelloAsync(dbHello);
        Assert.Empty(dbWelcome.Config.CollectorIntervals);
    }

    [Fact]
    public async Task ChangedRules_ArePushedToConnectedAgents()
    {
        using var coordinator = WithRules();
        await using var web = RawAgentStream.Open(coordinator.Channel());
        var hello = RawAgentStream.Hello(NewAgentId());
        hello.Tags["role"] = "web";
        await web.HelloAsync(hello);

        var configuration = (IConfigurationRoot)coordinator.Services.GetRequiredService<IConfiguration>();
        configuration["Fleet:Agents:CollectorIntervals:0:Intervals:disk"] = "00:05:00";
        configuration.Reload();

        CoordinatorMessage message;
        do message = await web.ReceiveAsync();
        while (message.BodyCase != CoordinatorMessage.BodyOneofCase.Config);
        Assert.Equal(TimeSpan.FromMinutes(5), message.Config.CollectorIntervals["disk"].ToTimeSpan());
        Assert.Equal(TimeSpan.FromSeconds(30), message.Config.CollectorIntervals["cpu"].ToTimeSpan());
    }

    [Fact]
    public void AnIntervalOutOfRange_StopsTheStart_NamingTheKey()
    {
        using var coordinator = new CoordinatorFactory(Store.Sqlite)
            .With("Fleet:Agents:CollectorIntervals:0:Intervals:disk", "00:00:00.100");
        var error = Assert.ThrowsAny<OptionsValidationException>(() => coordinator.CreateClient());
        Assert.Contains("Fleet:Agents:CollectorIntervals:0:Intervals:disk", error.Message, StringComparison.Ordinal);
    }
}
