using System.Globalization;
using Fleet.Agent.Probes;
using Fleet.Protocol.V1;
using ParamType = Fleet.Protocol.V1.ParameterSchema.Types.Type;

namespace Fleet.Agent.Tasks.Runbook;

/// <summary>health.check: runs the probes configured in agent.json now (or the one named by <c>probe</c>); fails when any fails.</summary>
public sealed class HealthCheckTask : IAgentTask
{
    public TaskDescriptor Descriptor { get; } = TaskSchema.Describe(
        "health.check", "Run the host's configured health probes now and report each one's result.", false,
        TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(10),
        TaskSchema.Parameter("probe", ParamType.String, "Run only the probe of this name."));

    public async Task<TaskOutcome> ExecuteAsync(TaskContext context, CancellationToken cancellationToken)
    {
        var selected = context.Probes.ToList();
        if (context.Parameters.String("probe") is { } name)
        {
            selected = [.. selected.Where(p => p.Name == name)];
            if (selected.Count == 0)
                throw new TaskParameterException("probe", $"'{name}' is not a configured probe (configured: {(context.Probes.Count == 0 ? "none" : string.Join(", ", context.Probes.Select(p => p.Name)))})");
        }
        if (context.DryRun)
        {
            foreach (var p in selected) await context.Output.WriteLineAsync($"would run probe {p.Name} ({p.Kind})", cancellationToken);
            return TaskOutcome.Succeeded($"dry run: would run {selected.Count} probes");
        }
        if (selected.Count == 0)
        {
            await context.Output.WriteLineAsync("no probes are configured in agent.json", cancellationToken);
            return TaskOutcome.Succeeded("no probes configured", new Dictionary<string, double> { ["probes.total"] = 0, ["probes.failed"] = 0 });
        }

        var results = await Task.WhenAll(selected.Select(s => RunProbeAsync(s, context.Time, cancellationToken)));
        foreach (var r in results)
        {
            await context.Output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"{(r.Ok ? "ok  " : "FAIL")} {r.Name} ({r.Kind} {r.Target}) {r.LatencyMs:0.#} ms{(r.Ok ? "" : ": " + r.Reason)}"), cancellationToken);
        }
        var failed = results.Where(r => !r.Ok).ToList();
        var figures = new Dictionary<string, double> { ["probes.total"] = results.Length, ["probes.failed"] = failed.Count };
        foreach (var r in results) figures[$"probe.{r.Name}.latency_ms"] = r.LatencyMs;
        var json = ResultJson.Build(w =>
        {
            w.WriteStartObject();
            w.WriteStartArray("probes");
            foreach (var r in results)
            {
                w.WriteStartObject();
                w.WriteString("name", r.Name);
                w.WriteString("kind", r.Kind);
                w.WriteString("target", r.Target);
                w.WriteBoolean("ok", r.Ok);
                w.WriteNumber("latencyMs", Math.Round(r.LatencyMs, 1));
                w.WriteString("reason", r.Reason);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
        return failed.Count == 0
            ? TaskOutcome.Succeeded($"{results.Length} probes ok", figures, json)
            : TaskOutcome.Failed($"{failed.Count} of {results.Length} probes failed: {string.Join("; ", failed.Select(f => $"{f.Name}: {f.Reason}"))}", FailureKinds.Task, figures, json);
    }

    /// <summary>Creates the probe, runs it once, disposes it.</summary>
    internal static async Task<ProbeResult> RunProbeAsync(ProbeSettings settings, TimeProvider time, CancellationToken cancellationToken)
    {
        var probe = ProbeRegistry.Default.Create(settings, time);
        try
        {
            return await probe.RunAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            return new ProbeResult { Name = probe.Name, Kind = probe.Kind, Target = probe.Target, Ok = false, Reason = $"probe error: {ex.Message}" };
        }
        finally
        {
            if (probe is IAsyncDisposable asyncDisposable) await asyncDisposable.DisposeAsync();
            else if (probe is IDisposable disposable) disposable.Dispose();
        }
    }
}
