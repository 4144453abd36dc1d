using System.CommandLine;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;

namespace Fleet.Cli.Runs;

/// <summary><c>fleetctl run TASK</c>: start a task on a set of hosts (or preview which hosts that would be).</summary>
internal static class RunCommand
{
    public static Command Build(CliContext context)
    {
        var task = RunArguments.NonEmpty(new Argument<string>("task") { Description = "The task to run, e.g. health.check" }, "the task must not be empty");
        var targets = RunArguments.Targets();
        var hosts = RunArguments.Hosts();
        var parameters = RunArguments.Parameters();
        var dryRun = new Option<bool>("--dry-run") { Description = "Ask the hosts what they would do, without changing anything" };
        var preview = new Option<bool>("--preview") { Description = "Only show the hosts the run would target; start nothing" };
        var canary = RunArguments.Canary();
        var maxConcurrency = RunArguments.CountOrPercent("--max-concurrency", 1, "At most this many hosts (or this share of them) at once, e.g. 10 or 10%");
        var maxErrors = RunArguments.CountOrPercent("--max-errors", 0, "Stop starting hosts after this many failures (or this share), e.g. 0, 1 or 5%");
        var deliveryTimeout = RunArguments.Duration("--delivery-timeout", "How long an offline host may take to come back before it counts as not delivered [default: 10m]");
        // Not --timeout: that is the global per-call deadline, accepted (recursively) by every command.
        var executionTimeout = RunArguments.Duration("--execution-timeout", "Stop the task on a host after this long [default: the task's own]");
        var yes = new Option<bool>("--yes", "-y") { Description = "Confirm a destructive task" };
        var wait = new Option<bool>("--wait", "-w") { Description = "Follow the run until it finishes; exit 1 unless every host succeeded" };
        var clientToken = new Option<string>("--client-token")
        {
            Description = "Idempotency token: the same token again returns the same run [default: a new one per invocation]",
            HelpName = "token",
        };
        var json = new Option<bool>("--json") { Description = "Print JSON (the REST API's field names) instead of text" };

        var run = new Command("run", "Run a task on hosts chosen by --target/--host")
        {
            task, targets, hosts, parameters, dryRun, preview, canary, maxConcurrency, maxErrors, deliveryTimeout, executionTimeout,
            yes, wait, clientToken, json,
        };
        run.Validators.Add(result =>
        {
            if (result.GetResult(targets) is null && result.GetResult(hosts) is null) result.AddError("fleetctl run needs at least one --target or --host");
            if (result.GetResult(preview) is not null && result.GetResult(wait) is not null) result.AddError("--preview and --wait cannot be used together");
        });
        run.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var (targetHosts, tags) = RunArguments.SplitTargets(parse.GetValue(targets) ?? []);
            var request = new CreateRunRequest
            {
                Task = parse.GetRequiredValue(task).Trim(),
                Hosts = { targetHosts, (parse.GetValue(hosts) ?? []).Select(h => h.Trim()) },
                Tags = { tags },
                MaxConcurrency = parse.GetValue(maxConcurrency)?.Trim() ?? "",
                MaxErrors = parse.GetValue(maxErrors)?.Trim() ?? "",
                Canary = parse.GetValue(canary),
                DeliveryTimeout = parse.GetValue(deliveryTimeout)?.Trim() ?? "",
                ExecutionTimeout = parse.GetValue(executionTimeout)?.Trim() ?? "",
                DryRun = parse.GetValue(dryRun),
                Confirm = parse.GetValue(yes),
                ClientToken = parse.GetValue(clientToken) is { Length: > 0 } token ? token : Guid.NewGuid().ToString(),
            };
            request.Parameters.Add(RunArguments.ToParameters(parse.GetValue(parameters) ?? []));

            var client = new Protocol.V1.Runs.RunsClient(session.CallInvoker);
            if (parse.GetValue(preview))
            {
                var response = await client.PreviewRunAsync(request, cancellationToken: ct);
                WritePreview(session.Out, response, parse.GetValue(json), request.Confirm);
                return ExitCodes.Ok;
            }

            var created = await RunFollow.StartAsync(attempt => client.CreateRunAsync(request, cancellationToken: attempt).ResponseAsync, session.Time, ct);
            return await RunFollow.ReportAsync(session, context.Environment.Error, created, parse.GetValue(wait), parse.GetValue(json));
        }, ct));
        return run;
    }

    private static void WritePreview(TextWriter output, PreviewRunResponse preview, bool json, bool confirmed)
    {
        if (json)
        {
            ProtoJson.Write(output, preview);
            return;
        }
        var hosts = preview.Hosts.OrderByDescending(h => h.Canary)
            .ThenBy(h => h.Hostname, StringComparer.OrdinalIgnoreCase)
            .ThenBy(h => h.AgentId, StringComparer.Ordinal)
            .ToList();
        if (hosts.Count > 0)
        {
            var table = new TextTable("HOST", "HOSTNAME", "ONLINE", "CANARY");
            foreach (var host in hosts) table.AddRow(host.AgentId, host.Hostname, host.Online ? "yes" : "no", host.Canary ? "yes" : "");
            table.WriteTo(output);
        }
        var offline = hosts.Count(h => !h.Online);
        var canaries = hosts.Count(h => h.Canary);
        var notes = new List<string>();
        if (offline > 0) notes.Add($"{offline} offline");
        if (canaries > 0) notes.Add($"{canaries} canary first");
        output.WriteLine($"{preview.Task} would run on {(hosts.Count == 1 ? "1 host" : $"{hosts.Count} hosts")}{(notes.Count > 0 ? $" ({string.Join(", ", notes)})" : "")}; nothing was started.");
        if (preview.Destructive && !confirmed) output.WriteLine($"{preview.Task} is destructive: add --yes to run it.");
    }
}
