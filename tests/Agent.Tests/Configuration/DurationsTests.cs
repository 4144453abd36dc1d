using Fleet.Protocol;

namespace Fleet.Agent.Tests.Configuration;

/// <summary>The one duration syntax shared by the API, fleetctl, agent.json, the policy and task parameters.</summary>
public sealed class DurationsTests
{
    [Theory]
    [InlineData("250ms", 250)]
    [InlineData("30s", 30_000)]
    [InlineData("5m", 300_000)]
    [InlineData("1h30m", 5_400_000)]
    [InlineData("2d", 172_800_000)]
    [InlineData("1.5h", 5_400_000)]
    [InlineData("45", 45_000)]
    [InlineData(" 10M ", 600_000)]
    public void Parses_WhatOperatorsWrite(string text, long milliseconds)
    {
        Assert.True(Durations.TryParse(text, out var value));
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("abc")]
    [InlineData("10x")]
    [InlineData("1d5")]
    [InlineData("-5s")]
    [InlineData("1000000000000d")]
    [InlineData("1000000d1000000d1000000d1000000d1000000d1000000d1000000d1000000d1000000d1000000d1000000d")]
    public void Refuses_AnythingElse_WithoutThrowing(string text)
    {
        Assert.False(Durations.TryParse(text, out _));
    }
}
