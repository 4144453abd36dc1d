using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;
using Grpc.Core;

namespace Fleet.Cli.Runs;

/// <summary><c>fleetctl runs list|show|output|cancel|retry</c>: runs the coordinator has started.</summary>
internal static class RunsCommands
{
    private const int DefaultLimit = 50;

    /// <summary>The server's largest page.</summary>
    private const int MaxPageSize = 500;

    public static Command Build(CliContext context)
    {
        var runs = new Command("runs", "List, inspect, cancel and retry runs");
        runs.Add(BuildList(context));
        runs.Add(BuildShow(context));
        runs.Add(BuildOutput(context));
        runs.Add(BuildCancel(context));
        runs.Add(BuildRetry(context));
        return runs;
    }

    private static Command BuildList(CliContext context)
    {
        var task = new Option<string>("--task") { Description = "Only runs of this task", HelpName = "task" };
        var status = new Option<RunStatus>("--status")
        {
            Description = "Only runs with this status",
            HelpName = "in_progress|succeeded|failed|cancelled",
            CustomParser = result =>
            {
                var raw = result.Tokens[^1].Value;
                if (RunArguments.ParseStatus(raw) is { } parsed) return parsed;
                result.AddError($"invalid --status value '{raw}': expected in_progress, succeeded, failed or cancelled");
                return RunStatus.Unspecified;
            },
        };
        var limit = Paging.LimitOption(DefaultLimit, "runs");
        var json = JsonOption();
        var list = new Command("list", "List runs, newest first") { task, status, limit, json };
        list.Aliases.Add("ls");
        list.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Protocol.V1.Runs.RunsClient(session.CallInvoker);
            var request = new ListRunsRequest { Task = parse.GetValue(task)?.Trim() ?? "", Status = parse.GetValue(status) };
            var runs = await ListAsync(client, request, parse.GetValue(limit), ct);

            if (parse.GetValue(json))
            {
                var result = new ListRunsResponse();
                result.Runs.AddRange(runs);
                ProtoJson.Write(session.Out, result);
                return ExitCodes.Ok;
            }
            if (runs.Count == 0)
            {
                await context.Environment.Error.WriteLineAsync("No runs.");
                return ExitCodes.Ok;
            }

            var table = new TextTable("ID", "TASK", "STATUS", "OK/FAILED/TOTAL", "CREATED BY", "CREATED AT");
            foreach (var run in runs)
            {
                var counts = run.Counts ?? new RunCounts();
                table.AddRow(run.Id, run.Task + (run.DryRun ? " (dry run)" : ""), RunText.StatusWord(run.Status),
                    $"{counts.Succeeded}/{RunText.NotSucceeded(counts)}/{counts.Total}", run.CreatedBy, RunText.Time(run.CreatedAt));
            }
            table.WriteTo(session.Out);
            return ExitCodes.Ok;
        }, ct));
        return list;
    }

    private static Task<List<Run>> ListAsync(Protocol.V1.Runs.RunsClient client, ListRunsRequest request, int limit, CancellationToken ct) =>
        Paging.TakeAsync(async (size, token) =>
        {
            request.PageSize = size;
            request.PageToken = token;
            var page = await client.ListRunsAsync(request, cancellationToken: ct);
            return (page.Runs.AsEnumerable(), page.NextPageToken);
        }, limit, MaxPageSize);

    private static Command BuildShow(CliContext context)
    {
        var id = IdArgument();
        var json = JsonOption();
        var show = new Command("show", "Show a run: its settings, every host's state, and the errors of hosts that did not succeed") { id, json };
        show.Aliases.Add("get");
        show.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Protocol.V1.Runs.RunsClient(session.CallInvoker);
            var run = await client.GetRunAsync(new GetRunRequest { Id = parse.GetRequiredValue(id).Trim() }, cancellationToken: ct);
            if (parse.GetValue(json)) ProtoJson.Write(session.Out, run);
            else RunText.WriteDetail(session.Out, run, session.Time);
            return ExitCodes.Ok;
        }, ct));
        return show;
    }

    private static Command BuildOutput(CliContext context)
    {
        var id = IdArgument();
        var host = HostArgument();
        var output = new Command("output", "Write one host's full output to stdout, byte for byte as the coordinator stored it") { id, host };
        output.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Protocol.V1.Runs.RunsClient(session.CallInvoker);
            var runId = parse.GetRequiredValue(id).Trim();
            var agentId = await ResolveHostAsync(client, runId, parse.GetRequiredValue(host).Trim(), ct);
            // No deadline (server stream); nothing is written until the first chunk, so a refused call leaves stdout empty.
            using var call = client.GetInvocationOutput(new GetInvocationOutputRequest { RunId = runId, AgentId = agentId }, cancellationToken: ct);
            await session.Out.FlushAsync(ct);
            var stdout = context.Environment.OpenStandardOutput();
            await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct))
            {
                await stdout.WriteAsync(chunk.Data.Memory, ct);
            }
            await stdout.FlushAsync(ct);
            return ExitCodes.Ok;
        }, ct));
        return output;
    }

    private static Command BuildCancel(CliContext context)
    {
        var id = IdArgument();
        var host = new Option<string>("--host") { Description = "Cancel only this host's invocation (host id or hostname)", HelpName = "host" };
        var reason = new Option<string>("--reason") { Description = "Why; kept with the run and in the audit trail", HelpName = "text" };
        var cancel = new Command("cancel", "Cancel a run (hosts already running are stopped), or one host's invocation") { id, host, reason };
        cancel.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Protocol.V1.Runs.RunsClient(session.CallInvoker);
            var runId = parse.GetRequiredValue(id).Trim();
            var agentId = parse.GetValue(host) is { } named && named.Trim().Length > 0 ? await ResolveHostAsync(client, runId, named.Trim(), ct) : "";
            var run = await client.CancelRunAsync(new CancelRunRequest { Id = runId, AgentId = agentId, Reason = parse.GetValue(reason) ?? "" }, cancellationToken: ct);
            var what = agentId.Length > 0 ? $"the invocation on {parse.GetValue(host)!.Trim()} in run {run.Id}" : $"run {run.Id}";
            await session.Out.WriteLineAsync($"Cancelled {what}; the run is {RunText.StatusWord(run.Status)}.");
            return ExitCodes.Ok;
        }, ct));
        return cancel;
    }

    private static Command BuildRetry(CliContext context)
    {
        var id = IdArgument();
        var failed = new Option<bool>("--failed") { Description = "Only the hosts that did not succeed" };
        var yes = new Option<bool>("--yes", "-y") { Description = "Confirm a destructive task" };
        var wait = new Option<bool>("--wait", "-w") { Description = "Follow the new run until it finishes; exit 1 unless every host succeeded" };
        var json = JsonOption();
        var retry = new Command("retry", "Start a new run with the same task and parameters") { id, failed, yes, wait, json };
        retry.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Protocol.V1.Runs.RunsClient(session.CallInvoker);
            var request = new RetryRunRequest
            {
                Id = parse.GetRequiredValue(id).Trim(),
                FailedOnly = parse.GetValue(failed),
                Confirm = parse.GetValue(yes),
                ClientToken = Guid.NewGuid().ToString(),
            };
            var run = await RunFollow.StartAsync(attempt => client.RetryRunAsync(request, cancellationToken: attempt).ResponseAsync, session.Time, ct);
            return await RunFollow.ReportAsync(session, context.Environment.Error, run, parse.GetValue(wait), parse.GetValue(json));
        }, ct));
        return retry;
    }

    /// <summary>The agent id of a host in the run, named by its id or by its hostname; an unknown name is passed on for the coordinator to refuse.</summary>
    private static async Task<string> ResolveHostAsync(Protocol.V1.Runs.RunsClient client, string runId, string host, CancellationToken ct)
    {
        var run = await client.GetRunAsync(new GetRunRequest { Id = runId }, cancellationToken: ct);
        if (run.Invocations.Any(i => i.AgentId == host)) return host;
        var named = run.Invocations.Where(i => string.Equals(i.Hostname, host, StringComparison.OrdinalIgnoreCase)).ToList();
        return named.Count switch
        {
            1 => named[0].AgentId,
            0 => host,
            _ => throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"{named.Count} hosts in run {runId} are named '{host}'; use the host id ({string.Join(", ", named.Select(i => i.AgentId))})")),
        };
    }

    private static Option<bool> JsonOption() => new("--json") { Description = "Print JSON (the REST API's field names) instead of text" };

    private static Argument<string> IdArgument() => RunArguments.NonEmpty(new Argument<string>("id") { Description = "The run ID" }, "the run ID must not be empty");

    private static Argument<string> HostArgument() =>
        RunArguments.NonEmpty(new Argument<string>("host") { Description = "The host: its ID, or its hostname in this run" }, "the host must not be empty");
}
