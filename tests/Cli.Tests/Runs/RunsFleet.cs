using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Tests.Runs;

/// <summary>Runs and invocations at fixed times, for the fake to serve.</summary>
public static class RunsFleet
{
    public static Timestamp At(DateTimeOffset time) => Timestamp.FromDateTimeOffset(time);

    public static Invocation Host(string agentId, string hostname, InvocationState state, int exitCode = 0, string summary = "", string error = "")
    {
        var invocation = new Invocation { AgentId = agentId, Hostname = hostname, State = state, ExitCode = exitCode, Summary = summary, Error = error };
        if (state >= InvocationState.Running) invocation.StartedAt = At(TestFleet.Now.AddSeconds(-30));
        if (state >= InvocationState.Succeeded) invocation.FinishedAt = At(TestFleet.Now.AddSeconds(-28));
        return invocation;
    }

    public static Run Run(string id, RunStatus status, params Invocation[] invocations)
    {
        var run = new Run
        {
            Id = id, Task = "health.check", Status = status, CreatedBy = "alice", CreatedAt = At(TestFleet.Now.AddMinutes(-1)),
            Tags = { "role=web" }, MaxConcurrency = "10%", MaxErrors = "1", Canary = 1,
        };
        run.Invocations.AddRange(invocations.Select(i => i.Clone()));
        run.Counts = new RunCounts
        {
            Total = invocations.Length,
            Pending = invocations.Count(i => i.State == InvocationState.Pending),
            Running = invocations.Count(i => i.State == InvocationState.Running),
            Succeeded = invocations.Count(i => i.State == InvocationState.Succeeded),
            Failed = invocations.Count(i => i.State == InvocationState.Failed),
            TimedOut = invocations.Count(i => i.State == InvocationState.TimedOut),
        };
        return run;
    }

    /// <summary>A run on web-01 and web-02 going from pending through running to <paramref name="web02"/> on web-02 (web-01 succeeds).</summary>
    public static Run[] Progress(string id, InvocationState web02)
    {
        var error = web02 == InvocationState.Succeeded ? "" : "http://localhost/health answered 503";
        var finished = web02 == InvocationState.Succeeded ? RunStatus.Succeeded : RunStatus.Failed;
        return
        [
            Run(id, RunStatus.InProgress, Host("a-web1", "web-01", InvocationState.Pending), Host("a-web2", "web-02", InvocationState.Pending)),
            Run(id, RunStatus.InProgress, Host("a-web1", "web-01", InvocationState.Running), Host("a-web2", "web-02", InvocationState.Running)),
            Run(id, RunStatus.InProgress, Host("a-web1", "web-01", InvocationState.Succeeded, summary: "all 3 checks ok"), Host("a-web2", "web-02", InvocationState.Running)),
            Run(id, finished,
                Host("a-web1", "web-01", InvocationState.Succeeded, summary: "all 3 checks ok"),
                Host("a-web2", "web-02", web02, exitCode: web02 == InvocationState.Succeeded ? 0 : 2, summary: "checks done", error: error)),
        ];
    }
}
