using System.Collections.Concurrent;
using System.Text;
using Fleet.Agent.Configuration;
using Fleet.Agent.Outbox;
using Fleet.Agent.Policy;
using Fleet.Agent.Probes;
using Fleet.Agent.Tasks;
using Fleet.Agent.Tests.Commands;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Fleet.Agent.Tests.Tasks;

/// <summary>A task runtime over a real outbox, journal and command runner in a temp state directory, with stand-in
/// executables first on the commands' PATH. Collects every task update the runtime writes to the outbox.</summary>
internal sealed class TaskHarness : IAsyncDisposable
{
    readonly CancellationTokenSource stop = new();
    readonly Task reader;
    readonly ConcurrentQueue<TaskUpdate> updates = new();

    TaskHarness(string stateDirectory, StandIns standIns, LocalPolicy policy, TaskRegistry registry, int maxConcurrent, IReadOnlyList<ProbeSettings> probes, ILogger<TaskRuntime>? logger)
    {
        StateDirectory = stateDirectory;
        StandIns = standIns;
        var options = new AgentOptions
        {
            StateDirectory = stateDirectory,
            MaxConcurrentTasks = maxConcurrent,
            TaskCommandSearchPath = standIns.Bin + ":" + Environment.GetEnvironmentVariable("PATH"),
            TaskKillGracePeriod = TimeSpan.FromSeconds(1),
            Probes = [.. probes],
        };
        Outbox = DurableOutbox.Open(new OutboxOptions { Directory = Path.Combine(stateDirectory, "outbox") }, NullLogger<DurableOutbox>.Instance);
        Journal = InvocationJournal.Open(stateDirectory, TimeProvider.System, NullLogger<InvocationJournal>.Instance);
        Runtime = new TaskRuntime(options, registry, policy, Journal,
            new TaskUpdatePublisher(Outbox, TimeProvider.System, NullLogger<TaskUpdatePublisher>.Instance),
            StandIns.Runner(), TimeProvider.System, logger ?? NullLogger<TaskRuntime>.Instance);
        reader = ReadAsync();
    }

    public string StateDirectory { get; }
    public StandIns StandIns { get; }
    public DurableOutbox Outbox { get; }
    public InvocationJournal Journal { get; }
    public TaskRuntime Runtime { get; }

    public static TaskHarness Create(StandIns standIns, string policyJson, string? stateDirectory = null, IEnumerable<IAgentTask>? tasks = null,
        int maxConcurrent = 2, IReadOnlyList<ProbeSettings>? probes = null, ILogger<TaskRuntime>? logger = null)
    {
        var registry = tasks is null ? TaskRegistry.Default : new TaskRegistry(tasks);
        var policy = LocalPolicy.Parse(policyJson, "test-policy.json", registry.Names);
        return new TaskHarness(stateDirectory ?? Directory.CreateDirectory(standIns.File("state-" + Guid.NewGuid().ToString("N"))).FullName,
            standIns, policy, registry, maxConcurrent, probes ?? [], logger);
    }

    async Task ReadAsync()
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var record = await Outbox.ReadNextAsync(stop.Token);
                var batch = Batch.Parser.ParseFrom(record.Payload.Span);
                if (batch.PayloadCase == Batch.PayloadOneofCase.Tasks)
                    foreach (var u in batch.Tasks.Updates) updates.Enqueue(u);
            }
        }
        catch (OperationCanceledException) { }
    }

    public IReadOnlyList<TaskUpdate> Updates(string invocationId) => [.. updates.Where(u => u.InvocationId == invocationId)];

    public async Task DispatchAsync(string id, string task, IReadOnlyDictionary<string, string>? parameters = null, bool dryRun = false, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        var dispatch = new Dispatch { InvocationId = id, RunId = "run-1", Task = task, DryRun = dryRun };
        if (parameters is not null) foreach (var (k, v) in parameters) dispatch.Parameters[k] = v;
        if (timeout is { } t) dispatch.ExecutionTimeout = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(t);
        await Runtime.DispatchAsync(dispatch, cancellationToken).DefaultTimeout();
    }

    /// <summary>Waits for the <paramref name="count"/>-th TaskFinished of the invocation and returns it.</summary>
    public async Task<TaskFinished> FinishedAsync(string id, int count = 1) =>
        (await Eventually.UntilAsync(
            () => Task.FromResult(Updates(id).Where(u => u.BodyCase == TaskUpdate.BodyOneofCase.Finished).ToList()),
            f => f.Count >= count, $"TaskFinished #{count} of {id}"))[count - 1].Finished;

    public async Task<TaskFinished> RunAsync(string id, string task, IReadOnlyDictionary<string, string>? parameters = null, bool dryRun = false, TimeSpan? timeout = null)
    {
        await DispatchAsync(id, task, parameters, dryRun, timeout);
        return await FinishedAsync(id);
    }

    /// <summary>The output chunks in offset order, concatenated (checks they are contiguous).</summary>
    public byte[] Output(string id)
    {
        var chunks = Updates(id).Where(u => u.BodyCase == TaskUpdate.BodyOneofCase.Output).Select(u => u.Output).OrderBy(o => o.Offset).ToList();
        using var all = new MemoryStream();
        foreach (var c in chunks)
        {
            Assert.Equal((ulong)all.Length, c.Offset);
            c.Data.WriteTo(all);
        }
        return all.ToArray();
    }

    public string OutputText(string id) => Encoding.UTF8.GetString(Output(id));

    public async ValueTask DisposeAsync()
    {
        await Runtime.DisposeAsync();
        await stop.CancelAsync();
        await reader;
        Journal.Dispose();
        await Outbox.DisposeAsync();
        stop.Dispose();
    }
}

/// <summary>A test task that waits at a gate, recording how many invocations (and of which task) run at once.</summary>
internal sealed class GateTask(string name, Gate gate) : IAgentTask
{
    public TaskDescriptor Descriptor { get; } = TaskSchema.Describe(name, "test", false, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1));

    public async Task<TaskOutcome> ExecuteAsync(TaskContext context, CancellationToken cancellationToken)
    {
        gate.Enter(name);
        try { await gate.Opened.Task.WaitAsync(cancellationToken); }
        finally { gate.Exit(name); }
        return TaskOutcome.Succeeded("done");
    }
}

internal sealed class Gate
{
    readonly Lock sync = new();
    readonly Dictionary<string, int> perTask = [];
    int running;

    public TaskCompletionSource Opened { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public int Running { get { lock (sync) return running; } }
    public int MaxRunning { get; private set; }
    public int MaxSameTask { get; private set; }
    public int Entered { get; private set; }

    public void Enter(string task)
    {
        lock (sync)
        {
            running++;
            Entered++;
            MaxRunning = Math.Max(MaxRunning, running);
            perTask[task] = perTask.GetValueOrDefault(task) + 1;
            MaxSameTask = Math.Max(MaxSameTask, perTask[task]);
        }
    }

    public void Exit(string task)
    {
        lock (sync)
        {
            running--;
            perTask[task]--;
        }
    }
}

/// <summary>A test task with a secret parameter that prints it, split across writes, and credential-looking lines.</summary>
internal sealed class LeakyTask : IAgentTask
{
    public TaskDescriptor Descriptor { get; } = TaskSchema.Describe("test.leaky", "test", false, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1),
        TaskSchema.Parameter("password", Fleet.Protocol.V1.ParameterSchema.Types.Type.String, "secret", required: true, secret: true));

    public async Task<TaskOutcome> ExecuteAsync(TaskContext context, CancellationToken cancellationToken)
    {
        var secret = context.Parameters.String("password")!;
        var half = secret.Length / 2;
        await context.Output.WriteAsync("connecting with " + secret[..half], cancellationToken);
        await context.Output.WriteAsync(secret[half..] + " now\n", cancellationToken);
        await context.Output.WriteLineAsync("db password=hunter22 token: abc123def", cancellationToken);
        await context.Output.WriteLineAsync("Authorization: Bearer eyJhbGciOi.payload.sig", cancellationToken);
        return TaskOutcome.Failed("login failed for " + secret);
    }
}

/// <summary>A test task that returns (or throws) whatever it is given, to exercise the runtime's bounds and logging.</summary>
internal sealed class ScriptedTask(string name, Func<TaskContext, TaskOutcome> run) : IAgentTask
{
    public TaskDescriptor Descriptor { get; } = TaskSchema.Describe(name, "test", false, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1),
        TaskSchema.Parameter("password", Fleet.Protocol.V1.ParameterSchema.Types.Type.String, "secret", secret: true),
        TaskSchema.Parameter("count", Fleet.Protocol.V1.ParameterSchema.Types.Type.Int, "a number the task needs as int32"));

    public Task<TaskOutcome> ExecuteAsync(TaskContext context, CancellationToken cancellationToken) => Task.FromResult(run(context));
}
