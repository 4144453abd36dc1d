using System.Collections.Concurrent;
using Fleet.Agent.Commands;
using Fleet.Agent.Configuration;
using Fleet.Agent.Policy;
using Fleet.Protocol.V1;
using TaskStatus = Fleet.Protocol.V1.TaskStatus;

namespace Fleet.Agent.Tasks;

/// <summary>
/// Runs dispatched tasks exactly once and safely: looks the invocation up in the journal (finished: its stored result
/// is sent again; running: ignored), validates parameters, checks the local policy, waits for a slot (at most
/// <see cref="AgentOptions.MaxConcurrentTasks"/> at once, one invocation per task), journals the start, executes with
/// the timeout, streams output and finishes with one TaskFinished. On start, invocations the journal shows started
/// but never finished are reported failed ("interrupted") and never re-run. Nothing throws out of it.
/// </summary>
public sealed partial class TaskRuntime : IHostedService, IAsyncDisposable
{
    readonly AgentOptions options;
    readonly TaskRegistry registry;
    readonly LocalPolicy policy;
    readonly InvocationJournal journal;
    readonly TaskUpdatePublisher publisher;
    readonly ICommandRunner commands;
    readonly TimeProvider time;
    readonly ILogger<TaskRuntime> logger;
    readonly SemaphoreSlim slots;
    readonly ConcurrentDictionary<string, SemaphoreSlim> perTask = new(StringComparer.Ordinal);
    readonly Lock gate = new();
    readonly Dictionary<string, Invocation> active = new(StringComparer.Ordinal);
    bool recovered;

    public TaskRuntime(AgentOptions options, TaskRegistry registry, LocalPolicy policy, InvocationJournal journal,
        TaskUpdatePublisher publisher, ICommandRunner commands, TimeProvider time, ILogger<TaskRuntime> logger)
    {
        this.options = options;
        this.registry = registry;
        this.policy = policy;
        this.journal = journal;
        this.publisher = publisher;
        this.commands = commands;
        this.time = time;
        this.logger = logger;
        slots = new SemaphoreSlim(options.MaxConcurrentTasks, options.MaxConcurrentTasks);
        if (!policy.Exists) LogNoPolicy(policy.Source);
    }

    /// <summary>The task catalog for the hello.</summary>
    public IEnumerable<TaskDescriptor> Catalog => registry.Catalog;

    /// <summary>Invocations queued or running.</summary>
    public int Active { get { lock (gate) return active.Count; } }

    public Task StartAsync(CancellationToken cancellationToken) => RecoverAsync(cancellationToken);

    /// <summary>Reports every invocation the journal shows started but not finished as interrupted (once; idempotent).</summary>
    public async Task RecoverAsync(CancellationToken cancellationToken)
    {
        lock (gate)
        {
            if (recovered) return;
            recovered = true;
        }
        foreach (var id in journal.Unfinished())
            await FinishInterruptedAsync(id, cancellationToken);
    }

    async Task FinishInterruptedAsync(string id, CancellationToken cancellationToken)
    {
        LogInterrupted(id);
        await FinishAsync(id, "?", new TaskFinished
        {
            Status = TaskStatus.Failed,
            FailureKind = FailureKinds.Interrupted,
            Error = "interrupted: the agent restarted while the task was running; not re-run",
            Summary = "interrupted: the agent restarted while the task was running; not re-run",
        }, cancellationToken);
    }

    /// <summary>Handles a Dispatch from the coordinator; returns once it is accepted (execution goes on in the background).</summary>
    public async Task DispatchAsync(Dispatch dispatch, CancellationToken cancellationToken)
    {
        var id = dispatch.InvocationId;
        if (string.IsNullOrEmpty(id))
        {
            LogNoInvocationId(dispatch.Task);
            return;
        }
        Invocation invocation;
        lock (gate)
        {
            if (active.ContainsKey(id))
            {
                LogAlreadyRunning(id);
                return;
            }
            invocation = new Invocation(dispatch);
            active[id] = invocation;
        }
        var handedOff = false;
        try
        {
            // The publishes below are local, bounded outbox appends: they never take the stream's token, so a dropped
            // stream cannot leave the invocation behind as "already running".
            switch (journal.Find(id))
            {
                case { Finished: { } finished }:
                    LogResending(id, dispatch.Task);
                    var update = publisher.Update(id);
                    update.Finished = finished;
                    await publisher.PublishAsync([update], CancellationToken.None);
                    return;
                case { Finished: null }:
                    await FinishInterruptedAsync(id, CancellationToken.None);
                    return;
            }
            handedOff = true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The journal or outbox cannot be written: nothing is run; the coordinator redelivers later.
            LogRuntimeError(ex, id, dispatch.Task);
            return;
        }
        finally
        {
            if (!handedOff) Remove(invocation);
        }
        invocation.Run = Task.Run(() => RunAsync(invocation), CancellationToken.None);
    }

    /// <summary>Cancels a queued or running invocation. A cancel for an invocation this agent does not know (the
    /// dispatch has not arrived yet, or never will) is journalled as a CANCELLED result, so a dispatch that arrives
    /// later, even after a restart, is not executed: it gets that result ("cancelled before it started"). Such
    /// entries are bounded by the journal's compaction. No-op for an invocation already finished.</summary>
    public void Cancel(string invocationId, string reason)
    {
        if (string.IsNullOrEmpty(invocationId)) return;
        reason = string.IsNullOrEmpty(reason) ? "cancelled" : reason;
        Invocation? invocation;
        lock (gate)
        {
            // Under the gate: a dispatch registers in `active` under it before it reads the journal, so either it
            // sees this entry or this cancel sees it.
            if (!active.TryGetValue(invocationId, out invocation))
            {
                try
                {
                    if (journal.Find(invocationId) is not null) return;
                    LogCancelledBeforeDispatch(invocationId, reason);
                    journal.RecordFinished(invocationId, Finished(CancelledBeforeStart(reason), 0));
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    LogRuntimeError(ex, invocationId, "?");
                }
                return;
            }
        }
        LogCancelling(invocationId, reason);
        invocation.CancelReason = reason;
        try { invocation.Cancel.Cancel(); } catch (ObjectDisposedException) { }
    }

    static TaskOutcome CancelledBeforeStart(string reason) =>
        new() { Status = TaskStatus.Cancelled, Summary = $"cancelled before it started: {reason}", Error = reason };

    async Task RunAsync(Invocation invocation)
    {
        var dispatch = invocation.Dispatch;
        var id = dispatch.InvocationId;
        var given = dispatch.Parameters.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
        registry.TryGet(dispatch.Task, out var task);
        var masker = new SecretMasker(TaskParameters.SecretsOf(task?.Descriptor, given));
        try
        {
            var finished = await ExecuteAsync(invocation, task, given, masker);
            await FinishAsync(id, dispatch.Task, MaskedAndBounded(finished, masker), CancellationToken.None);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRuntimeError(ex, id, dispatch.Task);
        }
        finally
        {
            Remove(invocation);
        }
    }

    async Task<TaskFinished> ExecuteAsync(Invocation invocation, IAgentTask? task, Dictionary<string, string> given, SecretMasker masker)
    {
        var dispatch = invocation.Dispatch;
        var id = dispatch.InvocationId;
        if (task is null)
            return Finished(TaskOutcome.Failed($"unknown task '{dispatch.Task}' (this agent has: {string.Join(", ", registry.Names)})", FailureKinds.UnknownTask), 0);

        TaskParameters parameters;
        TaskPolicy rule;
        try
        {
            parameters = TaskParameters.Validate(task.Descriptor, given);
            rule = policy.For(task.Descriptor.Name);
        }
        catch (TaskParameterException ex) { return Refused(ex.Message, FailureKinds.Parameter); }
        catch (PolicyDeniedException ex) { return Refused(ex.Message, FailureKinds.Policy); }

        var timeout = EffectiveTimeout(task.Descriptor, dispatch.ExecutionTimeout);
        var taskLock = perTask.GetOrAdd(task.Descriptor.Name, _ => new SemaphoreSlim(1, 1));
        var haveTaskLock = false;
        var haveSlot = false;
        try
        {
            try
            {
                await taskLock.WaitAsync(invocation.Cancel.Token);
                haveTaskLock = true;
                await slots.WaitAsync(invocation.Cancel.Token);
                haveSlot = true;
            }
            catch (OperationCanceledException)
            {
                return Finished(CancelledBeforeStart(invocation.CancelReason ?? "cancelled"), 0);
            }

            journal.RecordStarted(id);
            LogStarted(id, dispatch.Task, dispatch.DryRun, timeout.TotalSeconds);
            var started = publisher.Update(id);
            started.Started = new TaskStarted { DryRun = dispatch.DryRun };
            await publisher.PublishAsync([started], CancellationToken.None);

            await using var output = new InvocationOutput(id, publisher, masker);
            using var timeoutSource = new CancellationTokenSource(timeout, time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(invocation.Cancel.Token, timeoutSource.Token);
            var context = new TaskContext
            {
                InvocationId = id,
                TaskName = task.Descriptor.Name,
                Parameters = parameters,
                DryRun = dispatch.DryRun,
                Policy = rule,
                Output = output,
                Commands = commands,
                Time = time,
                Probes = options.Probes,
                Timeout = timeout,
                CommandSearchPath = options.TaskCommandSearchPath,
                KillGracePeriod = options.TaskKillGracePeriod,
            };
            TaskOutcome outcome;
            try
            {
                outcome = await task.ExecuteAsync(context, linked.Token);
            }
            catch (OperationCanceledException) when (linked.IsCancellationRequested) { outcome = TaskOutcome.Failed("stopped"); }
            catch (PolicyDeniedException ex) { outcome = TaskOutcome.Failed(ex.Message, FailureKinds.Policy); }
            catch (TaskParameterException ex) { outcome = TaskOutcome.Failed(ex.Message, FailureKinds.Parameter); }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // Never the raw exception: its message or stack may carry parameter values (secrets).
                LogTaskThrew(id, dispatch.Task, ex.GetType().Name, masker.Apply(ex.Message));
                outcome = TaskOutcome.Failed($"task error: {ex.GetType().Name}: {ex.Message}");
            }

            if (outcome.Status != TaskStatus.Succeeded)
            {
                if (invocation.Cancel.IsCancellationRequested)
                    outcome = outcome with { Status = TaskStatus.Cancelled, FailureKind = "", Error = invocation.CancelReason ?? "cancelled", Summary = $"cancelled: {invocation.CancelReason}" };
                else if (timeoutSource.IsCancellationRequested)
                    outcome = outcome with { Status = TaskStatus.TimedOut, FailureKind = "", Error = $"timed out after {Fleet.Protocol.Durations.Format(timeout)}", Summary = $"timed out after {Fleet.Protocol.Durations.Format(timeout)}" };
            }
            await output.CompleteAsync();
            return Finished(outcome, output.Bytes);
        }
        finally
        {
            if (haveSlot) slots.Release();
            if (haveTaskLock) taskLock.Release();
        }

        TaskFinished Refused(string error, string kind)
        {
            LogRefused(id, dispatch.Task, kind, masker.Apply(error));
            return Finished(TaskOutcome.Failed(error, kind), 0);
        }
    }

    static TimeSpan EffectiveTimeout(TaskDescriptor descriptor, Google.Protobuf.WellKnownTypes.Duration? requested)
    {
        var fallback = descriptor.DefaultTimeout?.ToTimeSpan() ?? TimeSpan.FromMinutes(5);
        var max = descriptor.MaxTimeout?.ToTimeSpan() ?? fallback;
        var wanted = requested?.ToTimeSpan() is { } r && r > TimeSpan.Zero ? r : fallback;
        return wanted > max ? max : wanted;
    }

    static TaskFinished Finished(TaskOutcome outcome, ulong outputBytes)
    {
        var finished = new TaskFinished
        {
            Status = outcome.Status,
            ExitCode = outcome.ExitCode,
            Summary = outcome.Summary,
            Error = outcome.Error,
            FailureKind = outcome.FailureKind,
            OutputBytes = outputBytes,
            ResultJson = outcome.ResultJson,
        };
        foreach (var (k, v) in outcome.Figures) finished.Figures[k] = v;
        return finished;
    }

    /// <summary>Masks secrets, then clips what a task returned to <see cref="ResultLimits"/>, so a TaskFinished always
    /// fits one message (an oversized one would never be accepted and would block the outbox behind it).</summary>
    static TaskFinished MaskedAndBounded(TaskFinished finished, SecretMasker masker)
    {
        finished.Summary = ResultLimits.Clip(masker.Apply(finished.Summary), ResultLimits.MaxSummaryBytes);
        finished.Error = ResultLimits.Clip(masker.Apply(finished.Error), ResultLimits.MaxErrorBytes);
        finished.ResultJson = ResultLimits.BoundJson(masker.Apply(finished.ResultJson));
        return finished;
    }

    /// <summary>Journal first (fsync), then the outbox: a crash in between leaves a finished entry whose result is
    /// sent again on redelivery, never a second execution.</summary>
    async Task FinishAsync(string id, string taskName, TaskFinished finished, CancellationToken cancellationToken)
    {
        journal.RecordFinished(id, finished);
        var update = publisher.Update(id);
        update.Finished = finished;
        await publisher.PublishAsync([update], cancellationToken);
        LogFinished(id, taskName, finished.Status, finished.FailureKind, finished.Summary);
    }

    void Remove(Invocation invocation)
    {
        lock (gate)
        {
            if (active.TryGetValue(invocation.Dispatch.InvocationId, out var current) && current == invocation)
                active.Remove(invocation.Dispatch.InvocationId);
        }
        invocation.Cancel.Dispose();
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        Invocation[] running;
        lock (gate) running = [.. active.Values];
        foreach (var invocation in running)
        {
            invocation.CancelReason = "the agent is stopping";
            try { await invocation.Cancel.CancelAsync(); } catch (ObjectDisposedException) { }
        }
        try { await Task.WhenAll(running.Select(r => r.Run ?? Task.CompletedTask)).WaitAsync(cancellationToken); }
        catch (OperationCanceledException) { }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        slots.Dispose();
        foreach (var s in perTask.Values) s.Dispose();
    }

    sealed class Invocation(Dispatch dispatch)
    {
        public Dispatch Dispatch { get; } = dispatch;
        public CancellationTokenSource Cancel { get; } = new();
        public string? CancelReason { get; set; }
        public Task? Run { get; set; }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "No local policy file at {Path}: no task is permitted on this host")]
    partial void LogNoPolicy(string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dispatch of task {Task} without an invocation id ignored")]
    partial void LogNoInvocationId(string task);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Invocation {InvocationId} is already queued or running; redelivered dispatch ignored")]
    partial void LogAlreadyRunning(string invocationId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Invocation {InvocationId} ({Task}) already finished; sending its result again")]
    partial void LogResending(string invocationId, string task);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cancelling invocation {InvocationId}: {Reason}")]
    partial void LogCancelling(string invocationId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Invocation {InvocationId} ({Task}) refused ({Kind}): {Error}")]
    partial void LogRefused(string invocationId, string task, string kind, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Invocation {InvocationId}: task {Task} started (dry run {DryRun}, timeout {TimeoutSeconds} s)")]
    partial void LogStarted(string invocationId, string task, bool dryRun, double timeoutSeconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Invocation {InvocationId}: task {Task} finished {Status} {FailureKind}: {Summary}")]
    partial void LogFinished(string invocationId, string task, TaskStatus status, string failureKind, string summary);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Invocation {InvocationId} was running when the agent stopped; reported as interrupted, not re-run")]
    partial void LogInterrupted(string invocationId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Invocation {InvocationId}: task {Task} threw {ExceptionType}: {Message}")]
    partial void LogTaskThrew(string invocationId, string task, string exceptionType, string message);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cancel of invocation {InvocationId} arrived before its dispatch: it will not run ({Reason})")]
    partial void LogCancelledBeforeDispatch(string invocationId, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Invocation {InvocationId} ({Task}): the runtime failed to record its result")]
    partial void LogRuntimeError(Exception exception, string invocationId, string task);
}
