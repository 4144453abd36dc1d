using System.ComponentModel.DataAnnotations;

namespace Fleet.Coordinator.Runs;

/// <summary>Section "Fleet:Runs".</summary>
public sealed class RunsOptions : IValidatableObject
{
    public const string Section = "Fleet:Runs";

    /// <summary>How often the dispatch engine looks at active runs (it is also woken by new runs and results).</summary>
    public TimeSpan EngineInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Delivery timeout of a run that names none: an offline host after this is DeliveryTimedOut.</summary>
    public TimeSpan DefaultDeliveryTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Execution timeout assumed when neither the run nor the task descriptor names one.</summary>
    public TimeSpan DefaultExecutionTimeout { get; set; } = TimeSpan.FromHours(1);

    /// <summary>A dispatched invocation without a result this long after its execution timeout is TimedOut (the agent normally reports it).</summary>
    public TimeSpan ExecutionTimeoutGrace { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>A Dispatch not answered by a Started this long while its agent is online is sent again (a message may be lost on the way).</summary>
    public TimeSpan DispatchResendAfter { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>A CancelInvocation is sent again this often while the invocation is in flight and its agent online.</summary>
    public TimeSpan CancelResendInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Bytes of output kept inline at the start (head) and at the end (tail) of each invocation.</summary>
    [Range(1024, 16 * 1024 * 1024)]
    public int InlineOutputBytes { get; set; } = 64 * 1024;

    /// <summary>How often WatchRun looks for changes.</summary>
    public TimeSpan WatchInterval { get; set; } = TimeSpan.FromMilliseconds(300);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (EngineInterval < TimeSpan.FromMilliseconds(10) || EngineInterval > TimeSpan.FromMinutes(1))
            yield return new($"Fleet:Runs:EngineInterval: '{EngineInterval}' must be between 10 ms and 1 minute.", [nameof(EngineInterval)]);
        if (DefaultDeliveryTimeout <= TimeSpan.Zero)
            yield return new($"Fleet:Runs:DefaultDeliveryTimeout: '{DefaultDeliveryTimeout}' must be positive.", [nameof(DefaultDeliveryTimeout)]);
        if (DefaultExecutionTimeout <= TimeSpan.Zero)
            yield return new($"Fleet:Runs:DefaultExecutionTimeout: '{DefaultExecutionTimeout}' must be positive.", [nameof(DefaultExecutionTimeout)]);
        if (ExecutionTimeoutGrace < TimeSpan.Zero)
            yield return new($"Fleet:Runs:ExecutionTimeoutGrace: '{ExecutionTimeoutGrace}' must not be negative.", [nameof(ExecutionTimeoutGrace)]);
        if (DispatchResendAfter < TimeSpan.FromMilliseconds(100))
            yield return new($"Fleet:Runs:DispatchResendAfter: '{DispatchResendAfter}' is too short (at least 100 ms).", [nameof(DispatchResendAfter)]);
        if (CancelResendInterval < TimeSpan.FromMilliseconds(100))
            yield return new($"Fleet:Runs:CancelResendInterval: '{CancelResendInterval}' is too short (at least 100 ms).", [nameof(CancelResendInterval)]);
        if (WatchInterval < TimeSpan.FromMilliseconds(10))
            yield return new($"Fleet:Runs:WatchInterval: '{WatchInterval}' is too short (at least 10 ms).", [nameof(WatchInterval)]);
    }
}
