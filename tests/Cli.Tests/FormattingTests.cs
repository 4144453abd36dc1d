using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Grpc.Core;

namespace Fleet.Cli.Tests;

public sealed class FormattingTests
{
    [Theory]
    [InlineData("10", 10_000)]
    [InlineData("1.5", 1_500)]
    [InlineData("500ms", 500)]
    [InlineData("10s", 10_000)]
    [InlineData("2m", 120_000)]
    [InlineData("1h", 3_600_000)]
    [InlineData("1m30s", 90_000)]
    [InlineData(" 5S ", 5_000)]
    public void Durations_parse(string text, int milliseconds)
    {
        Assert.True(DurationText.TryParse(text, out var value));
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("s")]
    [InlineData("10x")]
    [InlineData("-5s")]
    [InlineData("00:00:10")]
    public void Bad_durations_do_not_parse(string text) => Assert.False(DurationText.TryParse(text, out _));

    [Theory]
    [InlineData(0, "0s ago")]
    [InlineData(4, "4s ago")]
    [InlineData(59, "59s ago")]
    [InlineData(60, "1m ago")]
    [InlineData(3599, "59m ago")]
    [InlineData(3600, "1h ago")]
    [InlineData(47 * 3600, "47h ago")]
    [InlineData(48 * 3600, "2d ago")]
    [InlineData(-30, "0s ago")]
    public void Ages_are_relative(int secondsAgo, string expected)
    {
        var now = TestFleet.Now;
        Assert.Equal(expected, Age.Ago(now.AddSeconds(-secondsAgo), now));
    }

    [Fact]
    public void Tables_align_columns_and_show_empty_cells_as_dash()
    {
        var table = new TextTable("A", "LONGER", "LAST");
        table.AddRow("wide-cell", "", "x y");
        table.AddRow("b", "two\nlines", "");
        var output = new StringWriter();
        table.WriteTo(output);

        Assert.Equal(
            "A          LONGER     LAST\n" +
            "wide-cell  -          x y\n" +
            "b          two lines  -\n",
            output.ToString().ReplaceLineEndings("\n"));
    }

    [Theory]
    [InlineData(StatusCode.NotFound, "not found")]
    [InlineData(StatusCode.InvalidArgument, "invalid argument")]
    [InlineData(StatusCode.PermissionDenied, "permission denied")]
    [InlineData(StatusCode.FailedPrecondition, "failed precondition")]
    [InlineData(StatusCode.Unauthenticated, "not authenticated")]
    public void Status_codes_read_as_words(StatusCode code, string expected) => Assert.Equal(expected, ErrorReport.Readable(code));

    [Fact]
    public void A_server_answering_unavailable_is_not_mistaken_for_unreachable()
    {
        var (message, exit) = ErrorReport.Describe(
            new RpcException(new Status(StatusCode.Unavailable, "replica is draining")), new Uri("http://127.0.0.1:5081"), TimeSpan.FromSeconds(10), default);

        Assert.Equal("unavailable: replica is draining", message);
        Assert.Equal(1, exit);
    }
}
