using Fleet.Agent.Commands;
using Fleet.Protocol.V1;
using ParamType = Fleet.Protocol.V1.ParameterSchema.Types.Type;

namespace Fleet.Agent.Tasks.Runbook;

/// <summary>service.status: <c>systemctl is-active</c> and <c>systemctl show</c> of one service the policy lists.</summary>
public sealed class ServiceStatusTask : IAgentTask
{
    internal const string Properties = "LoadState,ActiveState,SubState,MainPID,NRestarts,ExecMainStartTimestamp,Result";

    public TaskDescriptor Descriptor { get; } = TaskSchema.Describe(
        "service.status", "Show whether a systemd service is active, its state, main pid and restart count.", false,
        TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(5),
        TaskSchema.Parameter("service", ParamType.String, "The systemd unit, e.g. nginx.", required: true, pattern: TaskSchema.ServicePattern));

    public async Task<TaskOutcome> ExecuteAsync(TaskContext context, CancellationToken cancellationToken)
    {
        var service = context.Parameters.String("service")!;
        context.Policy.CheckService(service);
        if (context.DryRun)
        {
            await context.Output.WriteLineAsync($"would run: systemctl is-active {service}; systemctl show {service} --property={Properties}", cancellationToken);
            return TaskOutcome.Succeeded($"dry run: would show the status of {service}");
        }
        var state = await ShowAsync(context, service, cancellationToken);
        if (state.Error is { } error) return TaskOutcome.Failed(error);
        var p = state.Properties;
        if (p.GetValueOrDefault("LoadState") == "not-found") return TaskOutcome.Failed($"service '{service}' is not installed (LoadState=not-found)");
        var active = p.GetValueOrDefault("ActiveState", "unknown");
        var figures = new Dictionary<string, double> { ["service.active"] = active == "active" ? 1 : 0 };
        if (double.TryParse(p.GetValueOrDefault("NRestarts"), System.Globalization.CultureInfo.InvariantCulture, out var restarts)) figures["service.restarts"] = restarts;
        if (double.TryParse(p.GetValueOrDefault("MainPID"), System.Globalization.CultureInfo.InvariantCulture, out var pid)) figures["service.main_pid"] = pid;
        var json = ResultJson.Build(w =>
        {
            w.WriteStartObject();
            w.WriteString("service", service);
            foreach (var (k, v) in p) w.WriteString(k, v);
            w.WriteEndObject();
        });
        return TaskOutcome.Succeeded($"{service}: {active} ({p.GetValueOrDefault("SubState", "?")})", figures, json);
    }

    /// <summary>Runs <c>systemctl show</c> and parses Key=Value lines (its output is streamed too).</summary>
    internal static async Task<(Dictionary<string, string> Properties, string? Error)> ShowAsync(TaskContext context, string service, CancellationToken cancellationToken)
    {
        var isActive = await context.Commands.RunAsync(context.Command("systemctl", ["is-active", service]), cancellationToken);
        if (isActive.Outcome == CommandOutcome.FailedToStart) return ([], $"systemctl could not be run: {isActive.Error}");
        var show = await context.Commands.RunAsync(context.Command("systemctl", ["show", service, "--no-pager", $"--property={Properties}"]), cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();
        if (show.Outcome != CommandOutcome.Exited || show.ExitCode != 0)
            return ([], $"systemctl show {service} failed (exit code {show.ExitCode}): {FirstLine(show.StandardError)}");
        var properties = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in show.StandardOutput.Split('\n'))
        {
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0) properties[line[..eq]] = line[(eq + 1)..].Trim();
        }
        return (properties, null);
    }

    internal static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();
}
