using Fleet.Coordinator.Checklists;

namespace Fleet.Coordinator.Tests.Checklists;

public sealed class CalendarPeriodTests
{
    static DateTimeOffset At(string utc) => DateTimeOffset.Parse(utc, System.Globalization.CultureInfo.InvariantCulture);

    [Theory]
    [InlineData("2026-11-28", PeriodKind.Daily, "2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z")]
    [InlineData("2026-W48", PeriodKind.Weekly, "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z")]
    [InlineData("2026-w53", PeriodKind.Weekly, "2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z")]
    [InlineData("2027-W01", PeriodKind.Weekly, "2027-01-04T00:00:00Z", "2027-01-11T00:00:00Z")]
    [InlineData("2020-W01", PeriodKind.Weekly, "2019-12-30T00:00:00Z", "2020-01-06T00:00:00Z")]
    [InlineData("2026-11", PeriodKind.Monthly, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")]
    [InlineData("2026-Q4", PeriodKind.Quarterly, "2026-10-01T00:00:00Z", "2027-01-01T00:00:00Z")]
    [InlineData("2024-02-29", PeriodKind.Daily, "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z")]
    public void Parse_GivesTheUtcBounds(string text, PeriodKind kind, string start, string end)
    {
        Assert.True(CalendarPeriod.TryParse(text, out var period));
        Assert.Equal(kind, period.Value.Kind);
        Assert.Equal(At(start).UtcDateTime, period.Value.Start);
        Assert.Equal(At(end).UtcDateTime, period.Value.End);
        Assert.Equal(DateTimeKind.Utc, period.Value.Start.Kind);
        Assert.Equal(text.ToUpperInvariant(), period.Value.Text);
    }

    [Theory]
    [InlineData("")]
    [InlineData("last week")]
    [InlineData("2026-W54")]
    [InlineData("2027-W53")] // 2027 has 52 ISO weeks
    [InlineData("2026-W00")]
    [InlineData("2026-Q5")]
    [InlineData("2026-Q0")]
    [InlineData("2026-13")]
    [InlineData("2026-02-29")]
    [InlineData("2026-11-28T00:00")]
    [InlineData("26-11")]
    public void Parse_RejectsWhatIsNotAPeriod(string text) => Assert.False(CalendarPeriod.TryParse(text, out _));

    [Theory]
    // The last second of Sunday belongs to that ISO week, Monday 00:00 to the next.
    [InlineData("2026-11-29T23:59:59.9999999Z", PeriodKind.Weekly, "2026-W48")]
    [InlineData("2026-11-30T00:00:00Z", PeriodKind.Weekly, "2026-W49")]
    // ISO week-year: the first days of January 2027 are in 2026-W53, the last days of December 2019 in 2020-W01.
    [InlineData("2027-01-03T23:59:59Z", PeriodKind.Weekly, "2026-W53")]
    [InlineData("2027-01-04T00:00:00Z", PeriodKind.Weekly, "2027-W01")]
    [InlineData("2019-12-31T12:00:00Z", PeriodKind.Weekly, "2020-W01")]
    [InlineData("2027-01-03T23:59:59Z", PeriodKind.Monthly, "2027-01")]
    [InlineData("2026-12-31T23:59:59Z", PeriodKind.Quarterly, "2026-Q4")]
    [InlineData("2027-01-01T00:00:00Z", PeriodKind.Quarterly, "2027-Q1")]
    [InlineData("2026-06-30T23:59:59Z", PeriodKind.Quarterly, "2026-Q2")]
    [InlineData("2026-07-01T00:00:00Z", PeriodKind.Quarterly, "2026-Q3")]
    [InlineData("2026-11-28T23:59:59Z", PeriodKind.Daily, "2026-11-28")]
    // An instant with an offset is taken in UTC: 01:00+02:00 is still the previous UTC day.
    [InlineData("2026-11-29T01:00:00+02:00", PeriodKind.Daily, "2026-11-28")]
    public void Containing_PutsTheInstantInTheRightUtcPeriod(string instant, PeriodKind kind, string expected)
    {
        var period = CalendarPeriod.Containing(kind, At(instant));
        Assert.Equal(expected, period.Text);
        Assert.True(period.Contains(At(instant).UtcDateTime));
    }

    [Theory]
    [InlineData("2027-W01", "2026-W53")]
    [InlineData("2027-01", "2026-12")]
    [InlineData("2027-Q1", "2026-Q4")]
    [InlineData("2027-01-01", "2026-12-31")]
    public void Previous_CrossesTheYear(string text, string previous)
    {
        Assert.True(CalendarPeriod.TryParse(text, out var period));
        Assert.Equal(previous, period.Value.Previous().Text);
    }
}
