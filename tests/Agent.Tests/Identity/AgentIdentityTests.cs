using Fleet.Agent.Configuration;
using Fleet.Agent.Identity;
using Fleet.Protocol;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Identity;

public sealed class AgentIdentityTests
{
    [Fact]
    public void GeneratedId_IsValid_AndSurvivesRestarts()
    {
        using var state = new TempDirectory();
        var options = new AgentOptions { StateDirectory = state.Path };

        var first = AgentIdentity.Load(options);
        var second = AgentIdentity.Load(options);

        Assert.True(AgentIds.IsValid(first.AgentId));
        Assert.Equal(first.AgentId, second.AgentId);
        Assert.Equal(first.AgentId, File.ReadAllText(state.Combine("agent-id")));
    }

    [Fact]
    public void WipedState_GivesANewId()
    {
        using var a = new TempDirectory();
        using var b = new TempDirectory();
        Assert.NotEqual(AgentIdentity.Load(new AgentOptions { StateDirectory = a.Path }).AgentId,
                        AgentIdentity.Load(new AgentOptions { StateDirectory = b.Path }).AgentId);
    }

    [Fact]
    public void ConfiguredId_WinsOverTheGeneratedOne()
    {
        using var state = new TempDirectory();
        var identity = AgentIdentity.Load(new AgentOptions { StateDirectory = state.Path, AgentId = "db-1" });
        Assert.Equal("db-1", identity.AgentId);
    }

    [Fact]
    public void CorruptIdFile_IsAClearError_NamingTheFile()
    {
        using var state = new TempDirectory();
        File.WriteAllText(state.Combine("agent-id"), "NOT VALID!");
        var error = Assert.Throws<AgentConfigException>(() => AgentIdentity.Load(new AgentOptions { StateDirectory = state.Path }));
        Assert.Contains(state.Combine("agent-id"), error.Message);
        Assert.Contains("'NOT VALID!'", error.Message);
    }

    [Fact]
    public void HostFacts_AreReadFromThisMachine()
    {
        using var state = new TempDirectory();
        var identity = AgentIdentity.Load(new AgentOptions { StateDirectory = state.Path });
        Assert.False(string.IsNullOrEmpty(identity.Hostname));
        Assert.Equal(File.ReadAllText("/proc/sys/kernel/osrelease").Trim(), identity.Kernel);
    }
}
