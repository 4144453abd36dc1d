using Fleet.Coordinator.Schedules;
using Grpc.Core;

namespace Fleet.Coordinator.Tests.Schedules;

/// <summary>The YAML form of a schedule (the shipped defaults): fields as the API's JSON, bad shapes named with their line.</summary>
public sealed class ScheduleYamlTests
{
    [Fact]
    public void AScheduleFile_BecomesTheApiShape()
    {
        var schedule = ScheduleYaml.Parse("""
            name: nightly
            cron: "0 2 * * *"
            duration: 1h
            paused: true
            steps:
              - task: health.check
            """, "nightly.yaml");

        Assert.Equal("nightly", schedule.Name);
        Assert.Equal("0 2 * * *", schedule.Cron);
        Assert.True(schedule.Paused);
        Assert.Equal("health.check", Assert.Single(schedule.Steps).Task);
    }

    [Theory]
    [InlineData("name: x\n? [a, b]\n: 1\n", "nightly.yaml: line 2: a key must be a field name")]
    [InlineData("- just\n- a list\n", "nightly.yaml: expected one YAML document holding a mapping")]
    [InlineData("name: [unclosed\n", "nightly.yaml: line")]
    public void ABadShape_IsInvalidArgument_NamingTheFileAndLine(string yaml, string expected)
    {
        var ex = Assert.Throws<RpcException>(() => ScheduleYaml.Parse(yaml, "nightly.yaml"));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith(expected, ex.Status.Detail);
    }
}
