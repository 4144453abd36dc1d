using System.Text.Json;
using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Runs;

/// <summary>What a CreateRun request resolves to: the task's descriptor and the target hosts, canaries first.</summary>
sealed record RunPlan(TaskDescriptor Task, bool Destructive, IReadOnlyList<AgentRecord> Hosts, HashSet<string> SecretNames);

/// <summary>Validates a run request (every error InvalidArgument naming the field) and creates the run with one invocation per host.</summary>
public sealed partial class RunCreator(
    IDbContextFactory<FleetDbContext> dbFactory,
    AuditLog audit,
    RunMessenger messenger,
    IOptions<RunsOptions> options,
    TimeProvider time,
    ILogger<RunCreator> logger)
{
    internal async Task<RunPlan> PlanAsync(FleetDbContext db, CreateRunRequest request, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(request.Task))
            throw ApiArguments.Invalid("task: a task name is required");
        if (request.Hosts.Count == 0 && request.Tags.Count == 0)
            throw ApiArguments.Invalid("hosts: name at least one host (agent id or hostname) or a tag selector (tags: key=value)");
        var selectors = request.Tags.Select(RunSpec.Tag).Select(t => KeyValuePair.Create(t.Key, t.Value)).ToList();

        var agents = await db.Agents.AsNoTracking().OrderBy(a => a.Hostname).ThenBy(a => a.Id).ToListAsync(cancellationToken);
        var tagsJson = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        var hosts = new List<AgentRecord>();
        var chosen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var name in request.Hosts)
        {
            var matches = agents.Where(a => AgentSelection.IsNamed(a, name)).ToList();
            if (matches.Count == 0)
                throw ApiArguments.Invalid($"hosts: '{name}' is not a known agent id or hostname");
            hosts.AddRange(matches.Where(a => chosen.Add(a.Id)));
        }
        if (selectors.Count > 0)
        {
            var tagged = agents.Where(a =>
            {
                if (!tagsJson.TryGetValue(a.TagsJson, out var tags)) tagsJson[a.TagsJson] = tags = AgentRegistry.Tags(a);
                return AgentSelection.HasTags(tags, selectors);
            }).ToList();
            if (tagged.Count == 0)
                throw ApiArguments.Invalid($"tags: '{string.Join("', '", request.Tags)}' match no host");
            hosts.AddRange(tagged.Where(a => chosen.Add(a.Id)));
        }
        if (hosts.Count == 0)
            throw ApiArguments.Invalid("hosts: the targets resolve to no host");

        // Hosts of one agent version share a catalog: parse each distinct catalog once.
        var catalogs = new Dictionary<string, TaskDescriptor?>(StringComparer.Ordinal);
        TaskDescriptor? Offered(AgentRecord host)
        {
            if (!catalogs.TryGetValue(host.TasksJson, out var task))
                catalogs[host.TasksJson] = task = AgentRegistry.Tasks(host).FirstOrDefault(t => t.Name == request.Task);
            return task;
        }
        var descriptors = hosts.Select(h => (Host: h, Task: Offered(h))).ToList();
        if (descriptors.All(d => d.Task is null))
            throw ApiArguments.Invalid($"task: '{request.Task}' is not offered by any targeted host");
        var missing = descriptors.Where(d => d.Task is null).Select(d => d.Host.Hostname).ToList();
        if (missing.Count > 0)
            throw ApiArguments.Invalid($"task: '{request.Task}' is not offered by {missing.Count} of the {hosts.Count} targeted hosts: {string.Join(", ", missing.Take(5))}{(missing.Count > 5 ? ", ..." : "")}");
        // Hosts may run different agent versions: the parameters must suit every schema in use.
        var schemas = catalogs.Values.OfType<TaskDescriptor>().Distinct().ToList();
        foreach (var schema in schemas)
            RunSpec.CheckParameters(schema, request.Parameters);
        var secrets = schemas.SelectMany(s => s.Parameters).Where(p => p.Secret).Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var destructive = schemas.Any(s => s.Destructive);
        if (request.Canary > hosts.Count)
            throw ApiArguments.Invalid($"canary: {request.Canary} is more than the {hosts.Count} targeted hosts");
        return new RunPlan(schemas[0], destructive, hosts, secrets);
    }

    /// <summary>Creates the run, or returns the existing run for a known client_token.</summary>
    public Task<RunRecord> CreateAsync(CreateRunRequest request, Actor actor, string? retryOf, CancellationToken cancellationToken) =>
        CreateAsync(request, actor, retryOf, fixedId: null, occurrenceId: null, cancellationToken);

    /// <summary>
    /// A schedule step's run with the id derived from its occurrence: a second call with the same id (another replica,
    /// a restart) returns the stored run instead of creating one, and its invocation ids are deterministic.
    /// </summary>
    internal async Task<RunRecord> CreateScheduledAsync(CreateRunRequest request, Actor actor, string runId, string occurrenceId, CancellationToken cancellationToken)
    {
        await using (var db = dbFactory.CreateDbContext())
            if (await db.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.Id == runId, cancellationToken) is { } existing)
                return existing;
        return await CreateAsync(request, actor, retryOf: null, runId, occurrenceId, cancellationToken);
    }

    async Task<RunRecord> CreateAsync(CreateRunRequest request, Actor actor, string? retryOf, string? fixedId, string? occurrenceId, CancellationToken cancellationToken)
    {
        var token = string.IsNullOrEmpty(request.ClientToken) ? null : request.ClientToken;
        if (token is { Length: > 128 })
            throw ApiArguments.Invalid("client_token: at most 128 characters");
        await using var db = dbFactory.CreateDbContext();
        if (token is not null && await db.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.ClientToken == token, cancellationToken) is { } existing)
            return existing;

        var plan = await PlanAsync(db, request, cancellationToken);
        if (plan.Destructive && !request.Confirm)
            throw ApiArguments.Invalid($"confirm: task '{request.Task}' is destructive; set confirm: true to run it");
        var total = plan.Hosts.Count;
        var maxConcurrency = RunSpec.Limit(request.MaxConcurrency, "max_concurrency", total, roundUp: true, minimum: 1);
        var maxErrors = RunSpec.Limit(request.MaxErrors, "max_errors", total, roundUp: false, minimum: 0);
        var delivery = RunSpec.Duration(request.DeliveryTimeout, "delivery_timeout", RunSpec.MaxDeliveryTimeout) ?? options.Value.DefaultDeliveryTimeout;
        var execution = RunSpec.ExecutionTimeout(request.ExecutionTimeout, plan.Task, options.Value.DefaultExecutionTimeout) ?? options.Value.DefaultExecutionTimeout;

        var now = InvocationUpdates.Now(time);
        var run = new RunRecord
        {
            Id = fixedId ?? RunIds.New(now),
            Task = request.Task,
            ParametersJson = JsonSerializer.Serialize(request.Parameters.ToDictionary(p => p.Key, p => p.Value)),
            SecretParametersJson = JsonSerializer.Serialize(plan.SecretNames.Order(StringComparer.Ordinal)),
            HostsJson = JsonSerializer.Serialize(request.Hosts),
            TagsJson = JsonSerializer.Serialize(request.Tags),
            MaxConcurrency = request.MaxConcurrency.Trim(),
            MaxConcurrencyLimit = maxConcurrency,
            MaxErrors = request.MaxErrors.Trim(),
            MaxErrorsLimit = maxErrors,
            Canary = (int)request.Canary,
            DeliveryTimeout = string.IsNullOrWhiteSpace(request.DeliveryTimeout) ? Fleet.Protocol.Durations.Format(delivery) : request.DeliveryTimeout.Trim(),
            DeliveryTimeoutMs = (long)delivery.TotalMilliseconds,
            ExecutionTimeout = request.ExecutionTimeout.Trim(),
            ExecutionTimeoutMs = (long)execution.TotalMilliseconds,
            DryRun = request.DryRun,
            Destructive = plan.Destructive,
            ClientToken = token,
            CreatedBy = actor.Name,
            CreatedAt = now,
            RetryOf = retryOf,
            OccurrenceId = occurrenceId,
        };
        db.Runs.Add(run);
        var invocations = plan.Hosts.Select((host, ordinal) => new InvocationRecord
        {
            Id = InvocationStates.InvocationId(run.Id, host.Id),
            RunId = run.Id,
            AgentId = host.Id,
            Hostname = host.Hostname,
            Ordinal = ordinal,
            Canary = ordinal < run.Canary,
            CreatedAt = now,
            UpdatedAt = now,
        }).ToList();
        audit.Add(db, actor, "run.created", target: $"run:{run.Id}", parameters: new Dictionary<string, string?>
        {
            ["task"] = run.Task,
            ["parameters"] = JsonSerializer.Serialize(RunsApi.ShownParameters(run)),
            ["hosts"] = total.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["targets"] = string.Join(",", request.Hosts.Concat(request.Tags)),
            ["dryRun"] = run.DryRun ? "true" : "false",
            ["retryOf"] = retryOf,
        });
        try
        {
            await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
            await db.SaveChangesAsync(cancellationToken); // the run row first (its client_token is the race's referee)
            await RunBulk.InsertInvocationsAsync(db, invocations, cancellationToken);
            await tx.CommitAsync(cancellationToken);
        }
        catch (DbUpdateException) when (token is not null)
        {
            // The same token raced us: the other request's run stands.
            await using var again = dbFactory.CreateDbContext();
            return await again.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.ClientToken == token, cancellationToken) ?? throw new InvalidOperationException("client token conflict without a run");
        }
        catch (DbUpdateException) when (fixedId is not null)
        {
            // Another replica created this deterministic run first: that one stands.
            await using var again = dbFactory.CreateDbContext();
            return await again.Runs.AsNoTracking().SingleOrDefaultAsync(r => r.Id == fixedId, cancellationToken) ?? throw new InvalidOperationException($"run {fixedId} conflicted but is not stored");
        }
        LogCreated(run.Id, run.Task, total, actor.ToString());
        messenger.Wake();
        return run;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId} created: task {Task} on {Hosts} hosts by {Actor}")]
    partial void LogCreated(string runId, string task, int hosts, string actor);
}
