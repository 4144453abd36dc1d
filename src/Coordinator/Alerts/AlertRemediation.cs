using System.Globalization;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol;
using Fleet.Protocol.V1;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Alerts;

/// <summary>
/// Runs a rule's <c>remediate</c> task on the host of each alert that fires. It reads committed <c>firing</c>
/// transitions of rules with a remediation (woken by <see cref="AlertTransitions"/>, and every
/// <see cref="AlertsOptions.RemediationPoll"/> for other replicas' and a crashed pass's work), newer than
/// <see cref="AlertsOptions.RemediationLookback"/>, that have no <c>remediation</c> transition yet. The run is created
/// through <see cref="RunCreator"/> (the same validation as any run: the host must offer the task, parameters must
/// fit its schema, destructive tasks need <c>confirm</c>; the agent's policy decides at execution) with the client
/// token <c>alert-remediation-{transition id}</c>, so replicas and retries get the one run back. The outcome is then
/// written once: a <c>remediation</c> transition (unique on rule, fingerprint, episode and kind, so exactly one replica
/// wins) with its audit row <c>alert.remediated</c> (the run id) or <c>alert.remediation_refused</c> (why) in one
/// transaction. A crash between the run and that record is repaired by the next pass (the token returns the run).
/// <para>
/// Rate limit: a firing less than the rule's <c>remediate.min_interval</c> (<see cref="CompiledRule.RemediationMinInterval"/>)
/// after the previous remediation run of the same rule on the same host (its <c>agent_id</c>) gets no run; its outcome is
/// recorded as refused ("rate limited …"). The decision must come out the same on every replica and after a crash, so it
/// only reads what cannot change any more: the recorded outcomes (with their run ids) of the EARLIER firings of that rule
/// and host, compared with the firing's own time, not the clock. A firing is therefore decided only once every earlier
/// firing of its rule and host that is still due has its outcome (until then it waits for the next pass), and a replica
/// that finds the decision already recorded by another keeps that one (the unique key).
/// </para>
/// </summary>
public sealed partial class AlertRemediation(
    IDbContextFactory<FleetDbContext> dbFactory,
    AlertRuleSet rules,
    AlertTransitions transitions,
    RunCreator creator,
    SilenceStore silences,
    Schedules.IOpenWindows windows,
    AuditLog audit,
    IOptions<AlertsOptions> options,
    TimeProvider time,
    ILogger<AlertRemediation> logger) : BackgroundService
{
    public const string TokenPrefix = "alert-remediation-";
    const int BatchSize = 100;
    readonly Func<CancellationToken, Task> wait = transitions.Listen();

    /// <summary>The run's client token for a firing transition.</summary>
    public static string ClientToken(long transitionId) => TokenPrefix + transitionId.ToString(CultureInfo.InvariantCulture);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try { await RemediateOnceAsync(stoppingToken); }
            catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                LogPassFailed(ex); // a database outage costs this pass; the next wake-up or poll retries
            }
            using var poll = new CancellationTokenSource(options.Value.RemediationPoll, time);
            using var either = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, poll.Token);
            try { await wait(either.Token); }
            catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested) { }
            catch (OperationCanceledException) { break; }
        }
    }

    /// <summary>One pass over the due firings; returns how many outcomes this call recorded (another replica's are not counted).</summary>
    public async Task<int> RemediateOnceAsync(CancellationToken cancellationToken)
    {
        var remediable = rules.Current.Where(r => r.Definition.Remediate is not null).ToDictionary(r => r.Id);
        if (remediable.Count == 0) return 0;
        var ids = remediable.Keys.ToList();
        var since = time.GetUtcNow().UtcDateTime - options.Value.RemediationLookback;
        List<AlertTransitionRecord> due;
        await using (var db = dbFactory.CreateDbContext())
        {
            var all = db.Set<AlertTransitionRecord>();
            due = await all.AsNoTracking()
                .Where(t => t.Kind == AlertTransitionKinds.Firing && t.Time >= since && ids.Contains(t.RuleId))
                .Where(t => !all.Any(r => r.RuleId == t.RuleId && r.Fingerprint == t.Fingerprint && r.Episode == t.Episode && r.Kind == AlertTransitionKinds.Remediation))
                .OrderBy(t => t.Id).Take(BatchSize).ToListAsync(cancellationToken);
        }
        var recorded = 0;
        foreach (var transition in due)
        {
            try
            {
                if (await RemediateAsync(remediable[transition.RuleId], transition, since, cancellationToken)) recorded++;
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                LogRemediationFailed(transition.Id, transition.RuleName, ex);
            }
        }
        return recorded;
    }

    async Task<bool> RemediateAsync(CompiledRule rule, AlertTransitionRecord firing, DateTime since, CancellationToken cancellationToken)
    {
        var remediation = rule.Definition.Remediate;
        var labels = AlertLabels.Parse(firing.LabelsJson);
        var agentId = labels.GetValueOrDefault("agent_id");
        var token = ClientToken(firing.Id);
        AlertRecord? alert;
        string? runId;
        await using (var db = dbFactory.CreateDbContext())
        {
            alert = await db.Set<AlertRecord>().AsNoTracking().FirstOrDefaultAsync(a => a.RuleId == firing.RuleId && a.Fingerprint == firing.Fingerprint, cancellationToken);
            runId = await db.Runs.AsNoTracking().Where(r => r.ClientToken == token).Select(r => r.Id).FirstOrDefaultAsync(cancellationToken);
        }
        string? refusal = null;
        if (runId is null)
        {
            if (string.IsNullOrEmpty(agentId))
                refusal = "the alert names no host (it has no agent_id label)";
            else if (alert is null || alert.Episode != firing.Episode || alert.State != AlertStates.Firing)
                refusal = "the alert was no longer firing when its remediation was due";
            else if (SilenceStore.HeldBackBy(labels, await silences.ActiveAsync(time.GetUtcNow().UtcDateTime, cancellationToken),
                         await windows.GetAsync(cancellationToken), time.GetUtcNow().UtcDateTime) is { } held)
                refusal = $"not run while the host's alerts are held back: {held}"; // planned work is not to be "fixed" mid-way
            else if (rule.RemediationMinInterval > TimeSpan.Zero && await RateLimitAsync(rule, firing, agentId, since, cancellationToken) is { } limit)
            {
                if (limit.Length == 0) return false; // an earlier firing of this rule and host is not decided yet: the next pass
                refusal = limit;
            }
            else
            {
                var request = new CreateRunRequest { Task = remediation.Task, Confirm = remediation.Confirm, ClientToken = token };
                request.Hosts.Add(agentId);
                request.Parameters.Add(remediation.Parameters);
                try
                {
                    runId = (await creator.CreateAsync(request, Actor.System($"rule:{rule.Name}"), retryOf: null, cancellationToken)).Id;
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.InvalidArgument)
                {
                    refusal = ex.Status.Detail; // not offered by the host, parameters that do not fit, a destructive task without confirm
                }
            }
        }
        return await RecordAsync(rule, firing, alert, agentId, runId, refusal, cancellationToken);
    }

    /// <summary>
    /// Null when the firing may remediate; the refusal when the previous run of the rule on the host was created less than
    /// the rule's min_interval before the firing; "" when an earlier firing of the rule and host, still due, has no
    /// recorded outcome yet (deciding now could disagree with what that firing's outcome will be).
    /// </summary>
    async Task<string?> RateLimitAsync(CompiledRule rule, AlertTransitionRecord firing, string agentId, DateTime since, CancellationToken cancellationToken)
    {
        var interval = rule.RemediationMinInterval;
        var from = firing.Time - interval;
        await using var db = dbFactory.CreateDbContext();
        var all = db.Set<AlertTransitionRecord>();
        // Narrows to this host in SQL (labels are stored by AlertLabels.Json, so the pair is spelled exactly so); the
        // parsed labels below decide. A fleet-wide burst of one rule then reads one host's rows per firing, not all.
        var host = "\"agent_id\":" + System.Text.Json.JsonSerializer.Serialize(agentId);
        var undecided = await all.AsNoTracking()
            .Where(t => t.RuleId == firing.RuleId && t.Kind == AlertTransitionKinds.Firing && t.Id < firing.Id && t.Time >= since && t.LabelsJson.Contains(host))
            .Where(t => !all.Any(r => r.RuleId == t.RuleId && r.Fingerprint == t.Fingerprint && r.Episode == t.Episode && r.Kind == AlertTransitionKinds.Remediation))
            .Select(t => new { t.Id, t.LabelsJson }).ToListAsync(cancellationToken);
        if (undecided.Any(t => AlertLabels.Parse(t.LabelsJson).GetValueOrDefault("agent_id") == agentId))
        {
            LogWaitingForEarlier(firing.RuleName, firing.Id, agentId);
            return "";
        }
        // An outcome is recorded after its run was created, so one recorded before `from` has no run after it.
        var outcomes = await all.AsNoTracking()
            .Where(t => t.RuleId == firing.RuleId && t.Kind == AlertTransitionKinds.Remediation && t.Time >= from && t.LabelsJson.Contains(host))
            .Select(t => new { t.Time, t.LabelsJson, t.AnnotationsJson }).ToListAsync(cancellationToken);
        var runs = outcomes.Select(o => (o.Time, Labels: AlertLabels.Parse(o.LabelsJson), Outcome: AlertLabels.Parse(o.AnnotationsJson)))
            .Where(o => o.Labels.GetValueOrDefault("agent_id") == agentId && o.Outcome.TryGetValue("run_id", out _)
                        && long.TryParse(o.Outcome.GetValueOrDefault("firing_transition"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var of) && of < firing.Id)
            .Select(o => (RunId: o.Outcome["run_id"], o.Time)).ToList();
        if (runs.Count == 0) return null;
        var ids = runs.Select(r => r.RunId).ToList();
        var created = await db.Runs.AsNoTracking().Where(r => ids.Contains(r.Id)).Select(r => new { r.Id, r.CreatedAt }).ToDictionaryAsync(r => r.Id, r => r.CreatedAt, cancellationToken);
        var last = runs.Select(r => (r.RunId, At: created.TryGetValue(r.RunId, out var at) ? at : r.Time)).MaxBy(r => r.At);
        if (last.At <= from) return null;
        return string.Create(CultureInfo.InvariantCulture,
            $"rate limited: remediate.min_interval is {Durations.Format(interval)} and the last remediation of rule {rule.Name} on {agentId} was run {last.RunId} at {last.At:yyyy-MM-ddTHH:mm:ssZ} (this firing: {firing.Time:yyyy-MM-ddTHH:mm:ssZ})");
    }

    /// <summary>The outcome, once: the remediation transition's unique key decides which replica writes it (and its audit row).</summary>
    async Task<bool> RecordAsync(CompiledRule rule, AlertTransitionRecord firing, AlertRecord? alert, string? agentId, string? runId, string? refusal, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var remediation = rule.Definition.Remediate;
        var outcome = new Dictionary<string, string>
        {
            ["task"] = remediation.Task,
            ["firing_transition"] = firing.Id.ToString(CultureInfo.InvariantCulture),
        };
        if (runId is not null) outcome["run_id"] = runId;
        else outcome["error"] = refusal!.Length > 500 ? refusal[..500] : refusal;
        await using var db = dbFactory.CreateDbContext();
        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        db.Set<AlertTransitionRecord>().Add(new AlertTransitionRecord
        {
            RuleId = firing.RuleId, RuleName = firing.RuleName, Fingerprint = firing.Fingerprint, Episode = firing.Episode,
            Kind = AlertTransitionKinds.Remediation, LabelsJson = firing.LabelsJson, AnnotationsJson = AlertLabels.Json(outcome),
            Severity = firing.Severity, Value = firing.Value, Time = now,
            RoutedAt = now, // nothing to notify
        });
        var parameters = new Dictionary<string, string?>
        {
            ["rule"] = firing.RuleName,
            ["episode"] = firing.Episode.ToString(CultureInfo.InvariantCulture),
            ["transition"] = firing.Id.ToString(CultureInfo.InvariantCulture),
            ["task"] = remediation.Task,
        };
        var target = alert is null ? $"rule:{firing.RuleName}" : $"alert:{alert.Id}";
        if (runId is not null)
        {
            parameters["run"] = runId;
            audit.Add(db, Actor.System($"rule:{rule.Name}"), "alert.remediated", target, agentId ?? "", parameters);
        }
        else
        {
            parameters["error"] = outcome["error"];
            audit.Add(db, Actor.System($"rule:{rule.Name}"), "alert.remediation_refused", target, agentId ?? "", parameters, outcome: "error: refused");
        }
        try
        {
            await db.SaveChangesAsync(cancellationToken);
            await tx.CommitAsync(cancellationToken);
        }
        catch (DbUpdateException)
        {
            LogRecordedElsewhere(firing.Id, firing.RuleName);
            return false; // another replica recorded this firing's outcome first
        }
        if (runId is not null) LogRemediated(firing.RuleName, firing.Id, remediation.Task, agentId ?? "", runId);
        else LogRefused(firing.RuleName, firing.Id, remediation.Task, agentId ?? "", refusal!);
        return true;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Rule {Rule}, firing {TransitionId}: remediation {Task} on {AgentId} is run {RunId}")]
    partial void LogRemediated(string rule, long transitionId, string task, string agentId, string runId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rule {Rule}, firing {TransitionId}: remediation {Task} on {AgentId} refused: {Reason}")]
    partial void LogRefused(string rule, long transitionId, string task, string agentId, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Rule {Rule}, firing {TransitionId}: an earlier firing on {AgentId} has no remediation outcome yet; decided on a later pass")]
    partial void LogWaitingForEarlier(string rule, long transitionId, string agentId);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Rule {Rule}, firing {TransitionId}: another replica recorded the remediation first")]
    partial void LogRecordedElsewhere(long transitionId, string rule);

    [LoggerMessage(Level = LogLevel.Error, Message = "Firing {TransitionId} of rule {Rule}: remediation failed; retried on the next pass")]
    partial void LogRemediationFailed(long transitionId, string rule, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Alert remediation pass failed; retried on the next wake-up or poll")]
    partial void LogPassFailed(Exception exception);
}
