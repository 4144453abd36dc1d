using Fleet.Coordinator.Alerts;
using Fleet.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Tests.Alerts;

/// <summary>Rules are validated on load too: a bad default rule stops the start naming the file, the field and the value.</summary>
public sealed class RuleLoadTests
{
    static DefaultRules Defaults(string? directory) =>
        new(null!, Options.Create(new AlertsOptions { DefaultRulesDirectory = directory }), TimeProvider.System, NullLogger<DefaultRules>.Instance);

    [Fact]
    public void ShippedDefaultRules_AllValidate_AndCoverTheRunbookChecks()
    {
        var rules = Defaults(null).Parse();
        Assert.Equal(
            ["agent-offline", "checklist-missed", "disk-full-predicted", "disk-usage", "error-log-rate", "health-endpoint-failing", "load-high",
             "memory-high", "notification-dead", "outbox-dropped", "run-failed", "ssh-failed-logins", "tls-expiring", "watchdog", "window-missed"],
            rules.Select(r => r.Name).Order(StringComparer.Ordinal));
        var disk = RuleCompiler.Compile(rules.Single(r => r.Name == "disk-usage"));
        Assert.Equal((">", 0.80, 0.75, TimeSpan.FromMinutes(5)), (disk.Operator, disk.Threshold, disk.Clear, disk.For));
        Assert.Equal(Condition.Hold, disk.Evaluate(0.78));
        Assert.Equal(Condition.Inactive, disk.Evaluate(0.75));
        Assert.Equal(Condition.Active, disk.Evaluate(0.81));
        Assert.Equal(14, RuleCompiler.Compile(rules.Single(r => r.Name == "tls-expiring")).Days);
        Assert.Equal(TimeSpan.FromDays(1), RuleCompiler.Compile(rules.Single(r => r.Name == "window-missed")).Within);
    }

    [Fact]
    public void BadDefaultRuleFile_FailsTheStart_NamingFileFieldAndValue()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.Combine("10-ok.yaml"), "name: ok\nkind: watchdog\nseverity: info\n");
        File.WriteAllText(dir.Combine("20-bad.yaml"), "name: bad\nkind: threshold\nseverity: warning\nexpr: disk.used_ratio => 0.8\n");
        var ex = Assert.Throws<OptionsValidationException>(() => Defaults(dir.Path).Parse());
        Assert.Contains("20-bad.yaml", ex.Message);
        Assert.Contains("expr: 'disk.used_ratio => 0.8'", ex.Message);
    }
}
