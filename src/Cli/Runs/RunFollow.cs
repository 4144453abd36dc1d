using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;
using Grpc.Core;

namespace Fleet.Cli.Runs;

/// <summary>What <c>run</c> and <c>runs retry</c> share: starting a run safely, then reporting it or following it to the end.</summary>
internal static class RunFollow
{
    /// <summary>How often a start is sent when the coordinator answers Unavailable; every attempt carries the same client token.</summary>
    public const int StartAttempts = 3;

    private static readonly TimeSpan RetryPause = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Sends a start (CreateRun, RetryRun) that carries a client token, again on Unavailable: the coordinator answers a
    /// known token with the run it already created, so a start that got through before the failure is not doubled.
    /// </summary>
    public static async Task<Run> StartAsync(Func<CancellationToken, Task<Run>> start, TimeProvider time, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await start(ct);
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable && attempt < StartAttempts && !ct.IsCancellationRequested)
            {
                await Task.Delay(RetryPause * attempt, time, ct);
            }
        }
    }

    /// <summary>Without --wait: the run's id and how to look at it. With --wait: live progress, a summary, exit 1 unless every host succeeded.</summary>
    public static async Task<int> ReportAsync(CoordinatorSession session, TextWriter error, Run run, bool wait, bool json)
    {
        if (!wait)
        {
            if (json)
            {
                ProtoJson.Write(session.Out, run);
                return ExitCodes.Ok;
            }
            var dryRun = run.DryRun ? " (dry run)" : "";
            await session.Out.WriteLineAsync($"Started run {run.Id}{dryRun}: {run.Task} on {Hosts(run)}.");
            await session.Out.WriteLineAsync($"Follow it with: fleetctl runs show {run.Id}");
            return ExitCodes.Ok;
        }
        return await WaitAsync(session, error, run, json);
    }

    private static string Hosts(Run run)
    {
        var count = run.Counts?.Total is > 0 ? run.Counts.Total : run.Invocations.Count;
        return count == 1 ? "1 host" : $"{count} hosts";
    }

    /// <summary>
    /// Follows WatchRun until the run is finished. Ctrl+C stops watching only: the run goes on, and the operator is
    /// told how to find it again. No deadline: the interceptor applies --timeout to unary calls only.
    /// </summary>
    private static async Task<int> WaitAsync(CoordinatorSession session, TextWriter error, Run started, bool json)
    {
        var ct = session.CancellationToken;
        var client = new Protocol.V1.Runs.RunsClient(session.CallInvoker);
        var progress = json ? null : new RunProgress(session.Out, Terminal.IsTerminal(session.Out), Terminal.Width(session.Out));
        var last = started;
        try
        {
            using var call = client.WatchRun(new GetRunRequest { Id = started.Id }, cancellationToken: ct);
            await foreach (var run in call.ResponseStream.ReadAllAsync(ct))
            {
                last = run;
                progress?.Update(run);
                await session.Out.FlushAsync(ct);
                if (RunText.IsFinished(run.Status)) break;
            }
        }
        catch (Exception ex) when (ct.IsCancellationRequested && ex is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
        {
            await error.WriteLineAsync($"run continues on the coordinator; fleetctl runs show {started.Id}");
            return ExitCodes.Cancelled;
        }

        if (!RunText.IsFinished(last.Status))
        {
            await error.WriteLineAsync($"fleetctl: the coordinator stopped reporting before run {started.Id} finished; fleetctl runs show {started.Id}");
            return ExitCodes.Failure;
        }

        if (json)
        {
            ProtoJson.Write(session.Out, last);
        }
        else
        {
            await session.Out.WriteLineAsync();
            RunText.WriteInvocationTable(session.Out, last.Invocations);
            await session.Out.WriteLineAsync(RunText.Outcome(last));
        }
        return RunText.AllSucceeded(last) ? ExitCodes.Ok : ExitCodes.Failure;
    }
}
