using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Fleet.Coordinator.Tests.Infrastructure;

namespace Fleet.Coordinator.Tests.Alerts;

/// <summary>The JSON transcoding of the alerts API: /api/v1/rules, /api/v1/alerts, /api/v1/silences.</summary>
public sealed class AlertsRestTests
{
    [Fact]
    public async Task Rest_CreatesRules_Answers400NamingTheField_AndServesAlertsAndSilences()
    {
        await using var h = new AlertsHarness(Store.Sqlite, null);
        using var http = h.Coordinator.CreateClient();

        using var bad = await http.PostAsJsonAsync("/api/v1/rules", new { rule = new { name = "disk", kind = "threshold", severity = "warning", expr = "disk.used_ratio > 0.8", @for = "five minutes" } });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        var problem = await bad.Content.ReadAsStringAsync();
        Assert.Contains("for: 'five minutes'", problem);

        using var created = await http.PostAsJsonAsync("/api/v1/rules", new { rule = new { name = "wd", kind = "watchdog", severity = "info" } });
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        using var listed = await http.GetAsync("/api/v1/rules");
        Assert.Contains("\"wd\"", await listed.Content.ReadAsStringAsync());

        await h.Engine.TickAsync(default);
        using var alerts = await http.GetAsync("/api/v1/alerts?state=firing");
        using var doc = JsonDocument.Parse(await alerts.Content.ReadAsStringAsync());
        var alert = Assert.Single(doc.RootElement.GetProperty("alerts").EnumerateArray());
        var id = alert.GetProperty("id").GetRawText().Trim('"');
        using var ack = await http.PostAsJsonAsync($"/api/v1/alerts/{id}:ack", new { comment = "seen" });
        Assert.Equal(HttpStatusCode.OK, ack.StatusCode);
        using var history = await http.GetAsync("/api/v1/alerts:history?rule=wd");
        Assert.Contains("acknowledged", await history.Content.ReadAsStringAsync());

        using var silence = await http.PostAsJsonAsync("/api/v1/silences", new { matchers = new[] { "host=web-1" }, duration = "2h", comment = "maintenance" });
        Assert.Equal(HttpStatusCode.OK, silence.StatusCode);
        using var badSilence = await http.PostAsJsonAsync("/api/v1/silences", new { matchers = new[] { "host" }, duration = "2h", comment = "x" });
        Assert.Equal(HttpStatusCode.BadRequest, badSilence.StatusCode);
        Assert.Contains("matchers: 'host'", await badSilence.Content.ReadAsStringAsync());
    }
}
