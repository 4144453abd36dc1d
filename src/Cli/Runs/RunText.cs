using System.Globalization;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Runs;

/// <summary>How runs and invocations read as text: state words, the invocation table, the detail view.</summary>
internal static class RunText
{
    public static string StatusWord(RunStatus status) => status switch
    {
        RunStatus.InProgress => "in_progress",
        RunStatus.Succeeded => "succeeded",
        RunStatus.Failed => "failed",
        RunStatus.Cancelled => "cancelled",
        _ => "unknown",
    };

    public static string StateWord(InvocationState state) => state switch
    {
        InvocationState.Pending => "pending",
        InvocationState.Delayed => "delayed",
        InvocationState.Dispatched => "dispatched",
        InvocationState.Running => "running",
        InvocationState.Succeeded => "succeeded",
        InvocationState.Failed => "failed",
        InvocationState.TimedOut => "timed_out",
        InvocationState.Cancelled => "cancelled",
        InvocationState.DeliveryTimedOut => "delivery_timed_out",
        InvocationState.Skipped => "skipped",
        _ => "unknown",
    };

    public static bool IsFinished(RunStatus status) => status is RunStatus.Succeeded or RunStatus.Failed or RunStatus.Cancelled;

    public static bool IsFinished(InvocationState state) => state >= InvocationState.Succeeded;

    /// <summary>Finished without succeeding: failed, timed out, cancelled, never delivered or skipped.</summary>
    public static int NotSucceeded(RunCounts? counts) =>
        counts is null ? 0 : counts.Failed + counts.TimedOut + counts.Cancelled + counts.DeliveryTimedOut + counts.Skipped;

    /// <summary>Exit 0 only when the run finished and every one of its hosts succeeded.</summary>
    public static bool AllSucceeded(Run run) =>
        run.Status == RunStatus.Succeeded && run.Invocations.All(i => i.State == InvocationState.Succeeded);

    public static string HostName(Invocation invocation) => invocation.Hostname.Length > 0 ? invocation.Hostname : invocation.AgentId;

    public static IEnumerable<Invocation> Sorted(IEnumerable<Invocation> invocations) =>
        invocations.OrderBy(HostName, StringComparer.OrdinalIgnoreCase).ThenBy(i => i.AgentId, StringComparer.Ordinal);

    public static string Time(Timestamp? time) =>
        time is null ? "" : time.ToDateTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>One row per host: HOST, STATE, EXIT, DURATION, SUMMARY (the error for a host that did not succeed).</summary>
    public static void WriteInvocationTable(TextWriter output, IEnumerable<Invocation> invocations)
    {
        var table = new TextTable("HOST", "STATE", "EXIT", "DURATION", "SUMMARY");
        foreach (var invocation in Sorted(invocations))
        {
            var ran = invocation.State is InvocationState.Succeeded or InvocationState.Failed;
            var duration = invocation.StartedAt is not null && invocation.FinishedAt is not null
                ? DurationText.Format(invocation.FinishedAt.ToDateTimeOffset() - invocation.StartedAt.ToDateTimeOffset())
                : "";
            var summary = invocation.State != InvocationState.Succeeded && invocation.Error.Length > 0 ? invocation.Error : invocation.Summary;
            table.AddRow(HostName(invocation), StateWord(invocation.State), ran ? invocation.ExitCode.ToString(CultureInfo.InvariantCulture) : "",
                duration, summary);
        }
        table.WriteTo(output);
    }

    /// <summary>"run r-1 succeeded: 3 of 3 hosts succeeded" or "run r-1 failed: 1 of 3 hosts did not succeed (max errors (0) reached)".</summary>
    public static string Outcome(Run run)
    {
        var total = run.Invocations.Count;
        var succeeded = run.Invocations.Count(i => i.State == InvocationState.Succeeded);
        var reason = run.StatusReason.Length > 0 ? $" ({run.StatusReason})" : "";
        return succeeded == total
            ? $"run {run.Id} {StatusWord(run.Status)}: {succeeded} of {total} hosts succeeded{reason}"
            : $"run {run.Id} {StatusWord(run.Status)}: {total - succeeded} of {total} hosts did not succeed{reason}";
    }

    public static void WriteDetail(TextWriter output, Run run, TimeProvider time)
    {
        var counts = run.Counts ?? new RunCounts();
        var fields = new (string Label, string Value)[]
        {
            ("ID", run.Id),
            ("Task", run.Task + (run.DryRun ? " (dry run)" : "")),
            ("Status", StatusWord(run.Status) + (run.StatusReason.Length > 0 ? $" ({run.StatusReason})" : "")),
            ("Retry of", run.RetryOf),
            ("Hosts", string.Join(", ", run.Hosts)),
            ("Tags", string.Join(", ", run.Tags)),
            ("Parameters", string.Join(", ", run.Parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"))),
            ("Canary", run.Canary == 0 ? "" : run.Canary.ToString(CultureInfo.InvariantCulture)),
            ("Max concurrency", run.MaxConcurrency),
            ("Max errors", run.MaxErrors),
            ("Delivery timeout", run.DeliveryTimeout),
            ("Execution timeout", run.ExecutionTimeout),
            ("Created by", run.CreatedBy),
            ("Created", run.CreatedAt is null ? "" : Age.WithAge(run.CreatedAt, time)),
            ("Finished", run.FinishedAt is null ? "" : Age.WithAge(run.FinishedAt, time)),
            ("Progress", $"{counts.Succeeded} succeeded, {NotSucceeded(counts)} did not succeed, {counts.Total} total"),
        };
        var width = fields.Max(f => f.Label.Length) + 2;
        foreach (var (label, value) in fields)
        {
            output.WriteLine($"{(label + ":").PadRight(width)}{(value.Length == 0 ? "-" : value)}");
        }

        if (run.Invocations.Count == 0) return;
        output.WriteLine();
        WriteInvocationTable(output, run.Invocations);

        var failed = Sorted(run.Invocations).Where(i => IsFinished(i.State) && i.State != InvocationState.Succeeded).ToList();
        if (failed.Count == 0) return;
        output.WriteLine();
        output.WriteLine("Errors:");
        foreach (var invocation in failed)
        {
            var kind = invocation.FailureKind.Length > 0 ? $", {invocation.FailureKind}" : "";
            var error = invocation.Error.Length > 0 ? invocation.Error : invocation.Summary;
            output.WriteLine($"  {HostName(invocation)} ({StateWord(invocation.State)}{kind}): {(error.Length > 0 ? error.ReplaceLineEndings(" ") : "-")}");
            if (invocation.OutputBytes > 0) output.WriteLine($"    output: fleetctl runs output {run.Id} {HostName(invocation)}");
        }
    }
}
