using System.Diagnostics;

namespace Fleet.Testing;

/// <summary>Waits for a condition with a deadline (never a fixed sleep as synchronisation).</summary>
public static class Eventually
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    public static async Task<T> UntilAsync<T>(Func<Task<T>> probe, Func<T, bool> done, string what, TimeSpan? timeout = null)
    {
        var deadline = Stopwatch.StartNew();
        var limit = timeout ?? Deadline;
        T last = default!;
        Exception? lastError = null;
        var pause = TimeSpan.FromMilliseconds(20);
        while (deadline.Elapsed < limit)
        {
            try
            {
                last = await probe();
                lastError = null;
                if (done(last)) return last;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                lastError = ex;
            }
            await Task.Delay(pause);
            pause = TimeSpan.FromMilliseconds(Math.Min(pause.TotalMilliseconds * 2, 250));
        }
        throw new TimeoutException($"Timed out after {limit.TotalSeconds:0.#} s waiting for {what}. Last value: {last}", lastError);
    }

    public static Task UntilAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null) =>
        UntilAsync(condition, ok => ok, what, timeout);

    public static Task UntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null) =>
        UntilAsync(() => Task.FromResult(condition()), ok => ok, what, timeout);

    /// <summary>Awaits a task with a deadline, so a hung await fails the test instead of hanging the run.</summary>
    public static async Task<T> DefaultTimeout<T>(this Task<T> task, TimeSpan? timeout = null) =>
        await task.WaitAsync(timeout ?? Deadline);

    public static async Task DefaultTimeout(this Task task, TimeSpan? timeout = null) =>
        await task.WaitAsync(timeout ?? Deadline);
}
