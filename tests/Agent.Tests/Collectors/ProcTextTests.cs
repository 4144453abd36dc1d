using System.Text;
using Fleet.Agent.Collectors;

namespace Fleet.Agent.Tests.Collectors;

public sealed class ProcTextTests : IDisposable
{
    private readonly FakeProc _proc = new();

    public void Dispose() => _proc.Dispose();

    [Fact]
    public void Files_larger_than_the_read_buffer_are_read_whole_and_small_ones_after_them_are_not_padded()
    {
        var large = new StringBuilder();
        for (var i = 0; i < 20_000; i++) large.Append("intr ").Append(i).Append(" ünï\n");
        _proc.Write("large", large.ToString()).Write("small", "cpu  1 2 3 4\n");

        Assert.Equal(large.ToString(), ProcText.ReadFile(Path.Combine(_proc.Root, "large")));
        Assert.Equal("cpu  1 2 3 4\n", ProcText.ReadFile(Path.Combine(_proc.Root, "small")));
    }

    [Fact]
    public void Tokens_are_split_on_runs_of_spaces_and_tabs()
    {
        var rest = "  cpu0\t 12  345 x".AsSpan();

        Assert.True(ProcText.NextToken(ref rest, out var name));
        Assert.Equal("cpu0", name.ToString());
        Assert.True(ProcText.NextUInt64(ref rest, out var a));
        Assert.True(ProcText.NextUInt64(ref rest, out var b));
        Assert.False(ProcText.NextUInt64(ref rest, out _));
        Assert.False(ProcText.NextToken(ref rest, out _));
        Assert.Equal((12UL, 345UL), (a, b));
    }
}
