namespace Fleet.Agent.Transport;

/// <summary>
/// Exponential backoff with "equal jitter": each delay is between half and all of the current step,
/// the step doubling per failure up to a cap. Many agents losing the coordinator at once do not come back in lockstep.
/// </summary>
public sealed class Backoff(TimeSpan initial, TimeSpan max, Random? random = null)
{
    readonly Random random = random ?? Random.Shared;
    int failures;

    public int Failures => failures;

    public TimeSpan Next()
    {
        var step = initial.TotalMilliseconds * Math.Pow(2, Math.Min(failures, 30));
        step = Math.Min(step, max.TotalMilliseconds);
        failures++;
        var half = step / 2;
        return TimeSpan.FromMilliseconds(half + random.NextDouble() * half);
    }

    public void Reset() => failures = 0;
}
