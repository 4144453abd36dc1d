using System.Text.Json;
using Fleet.Cli.Audit;
using Fleet.Protocol.V1;
using Fleet.Testing;

namespace Fleet.Cli.Tests.Audit;

/// <summary>fleetctl audit verify: 0 when the chain holds, 3 when it is broken, 1 when the coordinator cannot answer.</summary>
public sealed class AuditVerifyTests : IAsyncLifetime
{
    private FakeAuditCoordinator _coordinator = null!;
    private readonly CliRunner _cli = new();

    private static VerifyAuditResponse Healthy() => new()
    {
        Ok = true, RowsChecked = 12_345, AnchorsChecked = 7, FirstSeq = 1, LastSeq = 12_345, LastAnchoredSeq = 12_000, UnsealedRows = 3,
    };

    private static VerifyAuditResponse Broken() => new()
    {
        Ok = false, RowsChecked = 4_711, AnchorsChecked = 2, FirstSeq = 1, LastSeq = 4_711, FirstBrokenSeq = 4_711,
        Problem = "stored hash does not match the recomputed one\n(expected 3f2a…, found 9c1b…)",
    };

    public async Task InitializeAsync() => _coordinator = await FakeAuditCoordinator.StartAsync([]);

    public async Task DisposeAsync() => await _coordinator.DisposeAsync();

    private Task<CliRun> Run(params string[] args) => _cli.RunAsync(["--coordinator", _coordinator.Url, .. args]);

    [Fact]
    public async Task Verify_ok_prints_a_summary_and_exits_0()
    {
        _coordinator.Service.Verification = Healthy();

        var run = await Run("audit", "verify");

        Assert.Equal(0, run.ExitCode);
        Assert.Equal("", run.Stderr);
        Assert.Equal("audit chain OK: 12,345 rows (seq 1..12345), 7 anchors, last anchored seq 12000, 3 rows not yet sealed", Assert.Single(run.StdoutLines));
    }

    [Fact]
    public async Task Verify_broken_prints_the_first_broken_seq_on_stdout_and_exits_3()
    {
        _coordinator.Service.Verification = Broken();

        var run = await Run("audit", "verify");

        Assert.Equal(3, run.ExitCode);
        Assert.Equal("", run.Stderr);
        Assert.Equal("audit chain BROKEN at seq 4711: stored hash does not match the recomputed one (expected 3f2a…, found 9c1b…)", Assert.Single(run.StdoutLines));
    }

    [Fact]
    public async Task Verify_json_prints_the_response_with_the_same_exit_codes()
    {
        _coordinator.Service.Verification = Healthy();
        var ok = await Run("audit", "verify", "--json");
        _coordinator.Service.Verification = Broken();
        var broken = await Run("audit", "verify", "--json");

        Assert.Equal(0, ok.ExitCode);
        using (var json = JsonDocument.Parse(ok.Stdout))
        {
            Assert.True(json.RootElement.GetProperty("ok").GetBoolean());
            Assert.Equal("12345", json.RootElement.GetProperty("rowsChecked").GetString());
            Assert.Equal("0", json.RootElement.GetProperty("firstBrokenSeq").GetString());
        }
        Assert.Equal(3, broken.ExitCode);
        using (var json = JsonDocument.Parse(broken.Stdout))
        {
            Assert.False(json.RootElement.GetProperty("ok").GetBoolean());
            Assert.Equal("4711", json.RootElement.GetProperty("firstBrokenSeq").GetString());
            Assert.StartsWith("stored hash does not match", json.RootElement.GetProperty("problem").GetString());
        }
    }

    [Fact]
    public async Task Verify_against_an_unreachable_coordinator_exits_1_not_3()
    {
        var url = $"http://127.0.0.1:{FreePort.Next()}";
        var run = await _cli.RunAsync("--coordinator", url, "audit", "verify");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.Equal($"fleetctl: cannot reach the coordinator at {url} (connection refused)", Assert.Single(run.StderrLines));
    }

    [Fact]
    public async Task Verify_is_a_unary_call_with_the_timeout_as_deadline()
    {
        var before = DateTime.UtcNow;
        await Run("--timeout", "2m", "audit", "verify");

        var call = Assert.Single(_coordinator.Service.Calls);
        Assert.Equal("VerifyAudit", call.Method);
        Assert.InRange(call.Deadline, before.AddSeconds(119), DateTime.UtcNow.AddSeconds(121));
    }

    [Fact]
    public void Summary_uses_singulars_and_leaves_out_what_does_not_exist_yet()
    {
        Assert.Equal("audit chain OK: 1 row (seq 7..7), 1 anchor, last anchored seq 7, 0 rows not yet sealed",
            AuditCommands.Summary(new VerifyAuditResponse { Ok = true, RowsChecked = 1, AnchorsChecked = 1, FirstSeq = 7, LastSeq = 7, LastAnchoredSeq = 7 }));
        Assert.Equal("audit chain OK: 0 rows, 0 anchors, 1 row not yet sealed",
            AuditCommands.Summary(new VerifyAuditResponse { Ok = true, UnsealedRows = 1 }));
        Assert.Equal("audit chain BROKEN: anchor 2025-03-14 has an invalid signature",
            AuditCommands.Summary(new VerifyAuditResponse { Ok = false, Problem = "anchor 2025-03-14 has an invalid signature" }));
    }
}
