using Fleet.Agent.Commands;
using Fleet.Agent.Probes;
using Fleet.Protocol.V1;
using ParamType = Fleet.Protocol.V1.ParameterSchema.Types.Type;

namespace Fleet.Agent.Tasks.Runbook;

/// <summary>
/// service.restart (destructive): <c>systemctl restart SERVICE</c>, then verification until the policy's
/// verifyTimeout: the policy's <c>verifyProbe</c> must pass, or (without one) <c>systemctl is-active</c> must say active.
/// </summary>
public sealed class ServiceRestartTask : IAgentTask
{
    public TaskDescriptor Descriptor { get; } = TaskSchema.Describe(
        "service.restart", "Restart a systemd service and verify it came back (the policy's probe, else systemctl is-active).", true,
        TimeSpan.FromMinutes(2), TimeSpan.FromMinutes(15),
        TaskSchema.Parameter("service", ParamType.String, "The systemd unit, e.g. nginx.", required: true, pattern: TaskSchema.ServicePattern));

    public async Task<TaskOutcome> ExecuteAsync(TaskContext context, CancellationToken cancellationToken)
    {
        var service = context.Parameters.String("service")!;
        context.Policy.CheckService(service);
        var probe = context.Policy.VerifyProbe is { } probeName
            ? context.Probes.FirstOrDefault(p => p.Name == probeName)
              ?? throw new Policy.PolicyDeniedException($"task '{context.TaskName}': verifyProbe '{probeName}' is not a probe in agent.json")
            : null;
        var verification = probe is null ? $"systemctl is-active {service}" : $"probe '{probe.Name}'";
        if (context.DryRun)
        {
            await context.Output.WriteLineAsync($"would run: systemctl restart {service}", cancellationToken);
            await context.Output.WriteLineAsync($"would then verify with {verification} for up to {Fleet.Protocol.Durations.Format(context.Policy.VerifyTimeout)}", cancellationToken);
            return TaskOutcome.Succeeded($"dry run: would restart {service} and verify with {verification}");
        }

        await context.Output.WriteLineAsync($"$ systemctl restart {service}", cancellationToken);
        var restart = await context.Commands.RunAsync(context.Command("systemctl", ["restart", service]), cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();
        if (restart.Outcome != CommandOutcome.Exited || restart.ExitCode != 0)
            return TaskOutcome.Failed($"systemctl restart {service} failed (exit code {restart.ExitCode}): {restart.Error ?? ServiceStatusTask.FirstLine(restart.StandardError)}", exitCode: restart.ExitCode);

        var started = context.Time.GetTimestamp();
        var attempts = 0;
        string last;
        while (true)
        {
            attempts++;
            (var ok, last) = probe is null ? await IsActiveAsync(context, service, cancellationToken) : await ProbeAsync(probe, context.Time, cancellationToken);
            await context.Output.WriteLineAsync($"verify #{attempts} ({verification}): {(ok ? "ok" : last)}", cancellationToken);
            var figures = new Dictionary<string, double> { ["verify.attempts"] = attempts, ["verify.seconds"] = context.Time.GetElapsedTime(started).TotalSeconds };
            if (ok) return TaskOutcome.Succeeded($"{service} restarted and verified ({verification})", figures);
            if (context.Time.GetElapsedTime(started) >= context.Policy.VerifyTimeout)
                return TaskOutcome.Failed($"{service} restarted but not verified within {Fleet.Protocol.Durations.Format(context.Policy.VerifyTimeout)} ({verification}: {last})", figures: figures);
            await Task.Delay(TimeSpan.FromSeconds(1), context.Time, cancellationToken);
        }
    }

    static async Task<(bool, string)> IsActiveAsync(TaskContext context, string service, CancellationToken cancellationToken)
    {
        var result = await context.Commands.RunAsync(context.QuietCommand("systemctl", "is-active", service), cancellationToken);
        var state = ServiceStatusTask.FirstLine(result.StandardOutput);
        return (result.Outcome == CommandOutcome.Exited && state == "active", state.Length > 0 ? state : result.Error ?? $"exit code {result.ExitCode}");
    }

    static async Task<(bool, string)> ProbeAsync(ProbeSettings settings, TimeProvider time, CancellationToken cancellationToken)
    {
        var result = await HealthCheckTask.RunProbeAsync(settings, time, cancellationToken);
        return (result.Ok, result.Reason);
    }
}
