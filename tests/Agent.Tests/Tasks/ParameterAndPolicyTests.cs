using System.Runtime.Versioning;
using Fleet.Agent.Configuration;
using Fleet.Agent.Policy;
using Fleet.Agent.Tasks;
using Fleet.Agent.Tests.Commands;
using Fleet.Protocol.V1;
using Fleet.Testing;
using TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Agent.Tests.Tasks;

[Collection(CommandsCollection.Name)]
[SupportedOSPlatform("linux")]
public sealed class ParameterAndPolicyTests : IAsyncLifetime
{
    readonly StandIns standIns = new();
    readonly TempDirectory logs = new();
    TaskHarness harness = null!;

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(logs.Combine("allowed"));
        File.WriteAllText(logs.Combine("allowed", "app.log"), "line one\nERROR boom\nline three\n");
        File.WriteAllText(logs.Combine("secret.txt"), "ERROR not for you\n");
        harness = TaskHarness.Create(standIns, $$"""
            {
              "tasks": {
                "logs.scan": { "paths": ["{{logs.Combine("allowed")}}/**"] },
                "service.status": { "services": ["nginx"] },
                "app.command": { "commands": { "hello": { "command": ["echo", "hi"] } } }
              }
            }
            """);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await harness.DisposeAsync();
        standIns.Dispose();
        logs.Dispose();
    }

    static Dictionary<string, string> P(params string[] pairs) =>
        Enumerable.Range(0, pairs.Length / 2).ToDictionary(i => pairs[2 * i], i => pairs[2 * i + 1]);

    [Theory]
    [InlineData("lines", "abc", "parameter 'lines': 'abc' is not an integer")]
    [InlineData("since", "soon", "parameter 'since': 'soon' is not a duration")]
    [InlineData("path", "var/log/x", "parameter 'path': 'var/log/x' is not an absolute path")]
    [InlineData("colour", "blue", "parameter 'colour': not a parameter of task 'logs.scan'")]
    public async Task Invalid_parameter_fails_the_invocation_naming_the_field_and_value(string field, string value, string expected)
    {
        var parameters = P("path", logs.Combine("allowed", "app.log"));
        parameters[field] = value;

        var finished = await harness.RunAsync("inv-param-" + field, "logs.scan", parameters);

        Assert.Equal(TaskStatus.Failed, finished.Status);
        Assert.Equal("parameter", finished.FailureKind);
        Assert.StartsWith(expected, finished.Error, StringComparison.Ordinal);
        Assert.DoesNotContain(harness.Updates("inv-param-" + field), u => u.BodyCase == TaskUpdate.BodyOneofCase.Started);
    }

    [Fact]
    public async Task Missing_required_parameter_and_pattern_mismatch_are_parameter_failures()
    {
        var missing = await harness.RunAsync("inv-missing", "logs.scan");
        var pattern = await harness.RunAsync("inv-pattern", "service.status", P("service", "--root=/"));

        Assert.Equal(("parameter", "parameter 'path': required by task 'logs.scan'"), (missing.FailureKind, missing.Error));
        Assert.Equal("parameter", pattern.FailureKind);
        Assert.StartsWith("parameter 'service': '--root=/' does not match the pattern", pattern.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Secret_parameter_value_is_not_named_in_the_validation_error()
    {
        var descriptor = TaskSchema.Describe("t", "", false, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1),
            TaskSchema.Parameter("pin", ParameterSchema.Types.Type.Int, "", secret: true));

        var error = Assert.Throws<TaskParameterException>(() => TaskParameters.Validate(descriptor, P("pin", "s3cr3t")));

        Assert.Equal("parameter 'pin': '***' is not an integer", error.Message);
    }

    [Fact]
    public async Task Unknown_task_fails_as_unknown_task()
    {
        var finished = await harness.RunAsync("inv-unknown", "disk.wipe");

        Assert.Equal(TaskStatus.Failed, finished.Status);
        Assert.Equal("unknown-task", finished.FailureKind);
        Assert.Contains("disk.wipe", finished.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Task_not_listed_in_the_policy_is_refused()
    {
        var finished = await harness.RunAsync("inv-restart", "service.restart", P("service", "nginx"));

        Assert.Equal("policy", finished.FailureKind);
        Assert.StartsWith("not permitted by local policy: task 'service.restart' is not listed", finished.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Allowed_path_is_scanned_and_counts_matches()
    {
        var finished = await harness.RunAsync("inv-scan", "logs.scan", P("path", logs.Combine("allowed", "app.log")));

        Assert.Equal(TaskStatus.Succeeded, finished.Status);
        Assert.Equal(1, finished.Figures["lines.matched"]);
        Assert.Equal(3, finished.Figures["lines.scanned"]);
        Assert.Contains("ERROR boom", harness.OutputText("inv-scan"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Path_outside_the_globs_is_refused_also_through_dotdot_and_symlinks()
    {
        File.CreateSymbolicLink(logs.Combine("allowed", "escape.log"), logs.Combine("secret.txt"));
        Directory.CreateSymbolicLink(logs.Combine("allowed", "up"), logs.Path);

        var outside = await harness.RunAsync("inv-out", "logs.scan", P("path", logs.Combine("secret.txt")));
        var dotdot = await harness.RunAsync("inv-dotdot", "logs.scan", P("path", logs.Combine("allowed", "..", "secret.txt")));
        var fileLink = await harness.RunAsync("inv-link", "logs.scan", P("path", logs.Combine("allowed", "escape.log")));
        var dirLink = await harness.RunAsync("inv-dirlink", "logs.scan", P("path", logs.Combine("allowed", "up", "secret.txt")));

        foreach (var (id, f) in new[] { ("inv-out", outside), ("inv-dotdot", dotdot), ("inv-link", fileLink), ("inv-dirlink", dirLink) })
        {
            Assert.Equal("policy", f.FailureKind);
            Assert.StartsWith("not permitted by local policy: task 'logs.scan': path ", f.Error, StringComparison.Ordinal);
            Assert.Contains(logs.Combine("secret.txt"), f.Error, StringComparison.Ordinal);
            Assert.DoesNotContain("not for you", harness.OutputText(id), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Service_not_listed_and_command_not_declared_are_refused()
    {
        var service = await harness.RunAsync("inv-svc", "service.status", P("service", "sshd"));
        var command = await harness.RunAsync("inv-cmd", "app.command", P("command", "rm-everything"));

        Assert.Equal("policy", service.FailureKind);
        Assert.Equal("not permitted by local policy: task 'service.status': service 'sshd' is not listed (allowed: nginx)", service.Error);
        Assert.Equal("policy", command.FailureKind);
        Assert.Equal("not permitted by local policy: task 'app.command': command 'rm-everything' is not declared (declared: hello)", command.Error);
    }

    [Fact]
    public void Missing_policy_file_allows_nothing()
    {
        var policy = LocalPolicy.Load(logs.Combine("nope.json"), TaskRegistry.Default.Names);

        Assert.False(policy.Exists);
        var denied = Assert.Throws<PolicyDeniedException>(() => policy.For("health.check"));
        Assert.Contains("no policy file", denied.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"tasks": {"logs.scan": {"pathz": ["/var/log/**"]}}}""", "unknown key 'tasks.logs.scan.pathz'")]
    [InlineData("""{"tasks": {"shell.exec": {}}}""", "key 'tasks.shell.exec': unknown task")]
    [InlineData("""{"tasks": {"logs.scan": {"paths": ["var/log"]}}}""", "key 'tasks.logs.scan.paths': 'var/log' must be an absolute path pattern")]
    [InlineData("""{"tasks": {"app.command": {"commands": {"x": {"command": []}}}}}""", "key 'tasks.app.command.commands.x.command'")]
    public void Invalid_policy_stops_the_agent_naming_the_key(string json, string expected)
    {
        var error = Assert.Throws<AgentConfigException>(() => LocalPolicy.Parse(json, "policy.json", TaskRegistry.Default.Names));

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }
}
