using System.Text.Json;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Alerts;

/// <summary>The Alerts service: list, get, acknowledge, history.</summary>
sealed class AlertsApi(IDbContextFactory<FleetDbContext> dbFactory, SilenceStore silences, AuditLog audit, AlertTransitions transitions, TimeProvider time)
    : Protocol.V1.Alerts.AlertsBase
{
    public override async Task<ListAlertsResponse> ListAlerts(ListAlertsRequest request, ServerCallContext context)
    {
        var state = request.State.Trim().ToLowerInvariant();
        if (state.Length > 0 && state != "all" && Array.IndexOf(AlertStates.All, state) < 0)
            throw ApiArguments.Invalid($"state: '{request.State}' is not one of pending, firing, resolved, inactive, all");
        var limit = Limit(request.Limit, 500, "limit");
        await using var db = dbFactory.CreateDbContext();
        var query = db.Set<AlertRecord>().AsNoTracking();
        query = state switch
        {
            "" => query.Where(a => a.State == AlertStates.Pending || a.State == AlertStates.Firing),
            "all" => query,
            _ => query.Where(a => a.State == state),
        };
        if (request.Rule.Length > 0) query = query.Where(a => a.RuleName == request.Rule);
        var rows = await query.OrderByDescending(a => a.UpdatedAt).ThenByDescending(a => a.Id).Take(limit).ToListAsync(context.CancellationToken);
        var now = time.GetUtcNow().UtcDateTime;
        var active = await silences.ActiveAsync(now, context.CancellationToken);
        var response = new ListAlertsResponse();
        response.Alerts.AddRange(rows.Select(a => ToProto(a, active, now)));
        return response;
    }

    public override async Task<Alert> GetAlert(GetAlertRequest request, ServerCallContext context)
    {
        await using var db = dbFactory.CreateDbContext();
        var row = await db.Set<AlertRecord>().AsNoTracking().FirstOrDefaultAsync(a => a.Id == request.Id, context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"id: alert {request.Id} does not exist"));
        return await WithTransitionsAsync(db, row, context.CancellationToken);
    }

    async Task<Alert> WithTransitionsAsync(FleetDbContext db, AlertRecord row, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var alert = ToProto(row, await silences.ActiveAsync(now, cancellationToken), now);
        var history = await db.Set<AlertTransitionRecord>().AsNoTracking()
            .Where(t => t.RuleId == row.RuleId && t.Fingerprint == row.Fingerprint)
            .OrderBy(t => t.Id).Take(1000).ToListAsync(cancellationToken);
        alert.Transitions.AddRange(history.Select(ToProto));
        return alert;
    }

    public override async Task<Alert> AcknowledgeAlert(AcknowledgeAlertRequest request, ServerCallContext context)
    {
        if (request.Comment.Length > 1024) throw ApiArguments.Invalid($"comment: {request.Comment.Length} characters; at most 1024");
        var actor = context.Actor();
        await using var db = dbFactory.CreateDbContext();
        await using var tx = await db.Database.BeginTransactionAsync(context.CancellationToken);
        var row = await db.Set<AlertRecord>().FirstOrDefaultAsync(a => a.Id == request.Id, context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"id: alert {request.Id} does not exist"));
        if (row.State is not (AlertStates.Pending or AlertStates.Firing))
            throw new RpcException(new Status(StatusCode.FailedPrecondition, $"id: alert {request.Id} is {row.State}; only pending or firing alerts can be acknowledged"));
        if (row.AcknowledgedAt is not null)
            throw new RpcException(new Status(StatusCode.FailedPrecondition, $"id: alert {request.Id} was already acknowledged by {row.AcknowledgedBy} at {row.AcknowledgedAt:O}"));
        var now = time.GetUtcNow().UtcDateTime;
        row.AcknowledgedAt = now;
        row.AcknowledgedBy = actor.Name.Length > 256 ? actor.Name[..256] : actor.Name;
        row.AckComment = request.Comment;
        row.UpdatedAt = now;
        row.Version++;
        var annotations = AlertLabels.Parse(row.AnnotationsJson);
        annotations["ack_by"] = row.AcknowledgedBy;
        annotations["ack_comment"] = request.Comment;
        db.Set<AlertTransitionRecord>().Add(new AlertTransitionRecord
        {
            RuleId = row.RuleId, RuleName = row.RuleName, Fingerprint = row.Fingerprint, Episode = row.Episode, Kind = AlertTransitionKinds.Acknowledged,
            LabelsJson = row.LabelsJson, AnnotationsJson = AlertLabels.Json(annotations), Severity = row.Severity, Value = row.Value, Time = now,
        });
        audit.Add(db, actor, "alert.acknowledged", target: $"alert:{row.Id}", host: AlertLabels.Parse(row.LabelsJson).GetValueOrDefault("agent_id") ?? "",
            parameters: new Dictionary<string, string?> { ["rule"] = row.RuleName, ["episode"] = row.Episode.ToString(System.Globalization.CultureInfo.InvariantCulture), ["comment"] = request.Comment });
        try
        {
            await db.SaveChangesAsync(context.CancellationToken);
            await tx.CommitAsync(context.CancellationToken);
        }
        catch (DbUpdateException)
        {
            throw new RpcException(new Status(StatusCode.Aborted, $"id: alert {request.Id} changed while acknowledging it; try again"));
        }
        transitions.Wake();
        return await WithTransitionsAsync(db, row, context.CancellationToken);
    }

    public override async Task<ListAlertHistoryResponse> ListAlertHistory(ListAlertHistoryRequest request, ServerCallContext context)
    {
        var limit = Limit(request.Limit, 100, "limit");
        await using var db = dbFactory.CreateDbContext();
        var query = db.Set<AlertTransitionRecord>().AsNoTracking();
        if (request.Rule.Length > 0) query = query.Where(t => t.RuleName == request.Rule);
        if (request.AlertId != 0)
        {
            var alert = await db.Set<AlertRecord>().AsNoTracking().Where(a => a.Id == request.AlertId).Select(a => new { a.RuleId, a.Fingerprint })
                .FirstOrDefaultAsync(context.CancellationToken) ?? throw new RpcException(new Status(StatusCode.NotFound, $"alert_id: alert {request.AlertId} does not exist"));
            query = query.Where(t => t.RuleId == alert.RuleId && t.Fingerprint == alert.Fingerprint);
        }
        var rows = await query.OrderByDescending(t => t.Id).Take(limit).ToListAsync(context.CancellationToken);
        var response = new ListAlertHistoryResponse();
        response.Transitions.AddRange(rows.Select(ToProto));
        return response;
    }

    internal static int Limit(int requested, int fallback, string field) =>
        requested switch
        {
            0 => fallback,
            < 0 or > 5000 => throw ApiArguments.Invalid($"{field}: '{requested}' must be between 1 and 5000"),
            _ => requested,
        };

    static Timestamp? Ts(DateTime? t) => t is { } v ? Timestamp.FromDateTime(v) : null;

    internal static Alert ToProto(AlertRecord a, IReadOnlyList<SilenceRecord> silences, DateTime now)
    {
        var labels = AlertLabels.Parse(a.LabelsJson);
        var alert = new Alert
        {
            Id = a.Id, RuleId = a.RuleId, RuleName = a.RuleName, Fingerprint = a.Fingerprint, State = a.State, Episode = a.Episode, Severity = a.Severity,
            Value = a.Value, ActiveSince = Ts(a.ActiveSince), FiringSince = Ts(a.FiringSince), ResolvedAt = Ts(a.ResolvedAt),
            AcknowledgedAt = Ts(a.AcknowledgedAt), AcknowledgedBy = a.AcknowledgedBy ?? "", AckComment = a.AckComment ?? "",
            Silenced = silences.Any(s => SilenceStore.Matches(s, labels, now)),
        };
        alert.Labels.Add(labels);
        alert.Annotations.Add(AlertLabels.Parse(a.AnnotationsJson));
        return alert;
    }

    internal static AlertTransition ToProto(AlertTransitionRecord t)
    {
        var transition = new AlertTransition
        {
            Id = t.Id, RuleId = t.RuleId, RuleName = t.RuleName, Fingerprint = t.Fingerprint, Episode = t.Episode, Kind = t.Kind,
            Severity = t.Severity, Value = t.Value, Time = Timestamp.FromDateTime(t.Time), RoutedAt = Ts(t.RoutedAt),
        };
        transition.Labels.Add(AlertLabels.Parse(t.LabelsJson));
        transition.Annotations.Add(AlertLabels.Parse(t.AnnotationsJson));
        return transition;
    }
}

/// <summary>The Rules service: CRUD and validation (InvalidArgument naming the field and the value).</summary>
sealed class RulesApi(IDbContextFactory<FleetDbContext> dbFactory, AlertRuleSet rules, AlertStore store, AuditLog audit, TimeProvider time)
    : Protocol.V1.Rules.RulesBase
{
    public override async Task<ListRulesResponse> ListRules(ListRulesRequest request, ServerCallContext context)
    {
        await using var db = dbFactory.CreateDbContext();
        var rows = await db.Set<AlertRuleRecord>().AsNoTracking().OrderBy(r => r.Name).ToListAsync(context.CancellationToken);
        var response = new ListRulesResponse();
        response.Rules.AddRange(rows.Select(AlertRuleSet.ToRule));
        return response;
    }

    public override async Task<Rule> GetRule(GetRuleRequest request, ServerCallContext context)
    {
        await using var db = dbFactory.CreateDbContext();
        var row = await db.Set<AlertRuleRecord>().AsNoTracking().FirstOrDefaultAsync(r => r.Name == request.Name, context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"name: rule '{request.Name}' does not exist"));
        return AlertRuleSet.ToRule(row);
    }

    static Rule Parse(CreateRuleRequest request)
    {
        try
        {
            if (request.Yaml.Length > 0 && request.Rule is not null) throw new RuleInvalidException("rule, yaml: give one of them, not both");
            var rule = request.Yaml.Length > 0 ? RuleCompiler.FromYaml(request.Yaml)
                : request.Rule?.Clone() ?? throw new RuleInvalidException("rule: is required (or yaml)");
            RuleCompiler.Compile(rule);
            rule.Id = 0;
            rule.DefaultRule = false;
            rule.UpdatedAt = null;
            return rule;
        }
        catch (RuleInvalidException ex)
        {
            throw ApiArguments.Invalid(ex.Message);
        }
    }

    public override Task<Rule> ValidateRule(CreateRuleRequest request, ServerCallContext context) => Task.FromResult(Parse(request));

    public override async Task<Rule> CreateRule(CreateRuleRequest request, ServerCallContext context)
    {
        var rule = Parse(request);
        var now = time.GetUtcNow().UtcDateTime;
        await using var db = dbFactory.CreateDbContext();
        await using var tx = await db.Database.BeginTransactionAsync(context.CancellationToken);
        var row = await db.Set<AlertRuleRecord>().FirstOrDefaultAsync(r => r.Name == rule.Name, context.CancellationToken);
        if (row is not null && !request.Replace)
            throw new RpcException(new Status(StatusCode.AlreadyExists, $"name: rule '{rule.Name}' exists; use replace (fleetctl rules create --replace) to update it"));
        var created = row is null;
        var previous = row?.DefinitionJson;
        row ??= db.Set<AlertRuleRecord>().Add(new AlertRuleRecord { Name = rule.Name, Kind = rule.Kind, Severity = rule.Severity, CreatedAt = now }).Entity;
        row.Kind = rule.Kind;
        row.Severity = rule.Severity;
        row.Disabled = rule.Disabled;
        row.DefinitionJson = RuleCompiler.ToJson(rule);
        row.UpdatedAt = now;
        audit.Add(db, context.Actor(), created ? "rule.created" : "rule.updated", target: $"rule:{rule.Name}",
            parameters: new Dictionary<string, string?> { ["definition"] = row.DefinitionJson });
        try
        {
            await db.SaveChangesAsync(context.CancellationToken);
            await tx.CommitAsync(context.CancellationToken);
        }
        catch (DbUpdateException)
        {
            throw new RpcException(new Status(StatusCode.AlreadyExists, $"name: rule '{rule.Name}' was created concurrently"));
        }
        await rules.ReloadAsync(context.CancellationToken);
        // Disabled, or defined anew: its open alerts resolve. A new definition may label its series differently, so alerts
        // of the old one would never hear of their series again; what still holds fires again at the next evaluation.
        if (!created && (rule.Disabled || previous != row.DefinitionJson))
            await store.ApplyAsync(RuleCompiler.Compile(rule, row.Id), [], complete: true, now, context.CancellationToken);
        return AlertRuleSet.ToRule(row);
    }

    public override async Task<DeleteRuleResponse> DeleteRule(DeleteRuleRequest request, ServerCallContext context)
    {
        await using var db = dbFactory.CreateDbContext();
        await using var tx = await db.Database.BeginTransactionAsync(context.CancellationToken);
        var row = await db.Set<AlertRuleRecord>().FirstOrDefaultAsync(r => r.Name == request.Name, context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"name: rule '{request.Name}' does not exist"));
        db.Remove(row);
        audit.Add(db, context.Actor(), "rule.deleted", target: $"rule:{row.Name}", parameters: new Dictionary<string, string?> { ["definition"] = row.DefinitionJson });
        await db.SaveChangesAsync(context.CancellationToken);
        await tx.CommitAsync(context.CancellationToken);
        await rules.ReloadAsync(context.CancellationToken);
        // Its open alerts resolve (the fan-out sends the resolved notice); a rule that no longer compiles just closes nothing.
        var resolved = 0;
        try
        {
            var compiled = RuleCompiler.Compile(AlertRuleSet.ToRule(row), row.Id);
            resolved = await store.ApplyAsync(compiled, [], complete: true, time.GetUtcNow().UtcDateTime, context.CancellationToken);
        }
        catch (RuleInvalidException) { }
        return new DeleteRuleResponse { Deleted = true, AlertsResolved = resolved };
    }
}

/// <summary>The Silences service: create, list, expire (audited).</summary>
sealed class SilencesApi(IDbContextFactory<FleetDbContext> dbFactory, AuditLog audit, TimeProvider time) : Protocol.V1.Silences.SilencesBase
{
    public static readonly TimeSpan MaxDuration = TimeSpan.FromDays(365);

    public override async Task<Silence> CreateSilence(CreateSilenceRequest request, ServerCallContext context)
    {
        if (request.Matchers.Count == 0) throw ApiArguments.Invalid("matchers: at least one matcher is required (e.g. host=web-1)");
        if (request.Matchers.Count > 20) throw ApiArguments.Invalid($"matchers: {request.Matchers.Count} matchers; at most 20");
        var matchers = new List<string>();
        foreach (var text in request.Matchers)
        {
            try { matchers.Add(SilenceMatcher.Parse(text).ToString()); }
            catch (ArgumentException ex) { throw ApiArguments.Invalid(ex.Message); }
        }
        if (request.Comment.Trim().Length == 0) throw ApiArguments.Invalid("comment: is required (why the silence, for whoever looks at it later)");
        if (request.Comment.Length > 1024) throw ApiArguments.Invalid($"comment: {request.Comment.Length} characters; at most 1024");
        var now = time.GetUtcNow().UtcDateTime;
        var starts = request.StartsAt is null ? now : ApiArguments.Time(request.StartsAt, "starts_at");
        DateTime ends;
        if (request.Duration.Length > 0)
        {
            if (request.EndsAt is not null) throw ApiArguments.Invalid("ends_at, duration: give one of them, not both");
            if (!Protocol.Durations.TryParse(request.Duration, out var d) || d <= TimeSpan.Zero || d > MaxDuration)
                throw ApiArguments.Invalid($"duration: '{request.Duration}' is not a duration between 1s and 365d such as 2h");
            ends = starts + d;
        }
        else if (request.EndsAt is not null) ends = ApiArguments.Time(request.EndsAt, "ends_at");
        else throw ApiArguments.Invalid("ends_at, duration: one of them is required");
        if (ends <= starts) throw ApiArguments.Invalid($"ends_at: '{ends:O}' must be after starts_at '{starts:O}'");
        if (ends <= now) throw ApiArguments.Invalid($"ends_at: '{ends:O}' is in the past");
        if (ends - starts > MaxDuration) throw ApiArguments.Invalid($"ends_at: '{ends:O}' is more than 365 days after starts_at");
        var actor = context.Actor();
        var record = new SilenceRecord
        {
            Id = "s-" + RunIdsLike(now), MatchersJson = JsonSerializer.Serialize(matchers), StartsAt = starts, EndsAt = ends,
            Comment = request.Comment.Trim(), CreatedBy = actor.Name.Length > 256 ? actor.Name[..256] : actor.Name, CreatedAt = now,
        };
        await using var db = dbFactory.CreateDbContext();
        db.Set<SilenceRecord>().Add(record);
        audit.Add(db, actor, "silence.created", target: $"silence:{record.Id}", parameters: new Dictionary<string, string?>
        {
            ["matchers"] = string.Join(",", matchers), ["starts_at"] = starts.ToString("O"), ["ends_at"] = ends.ToString("O"), ["comment"] = record.Comment,
        });
        await db.SaveChangesAsync(context.CancellationToken);
        return ToProto(record, now);
    }

    static string RunIdsLike(DateTime now) => Runs.RunIds.New(new DateTimeOffset(now))[2..];

    public override async Task<ListSilencesResponse> ListSilences(ListSilencesRequest request, ServerCallContext context)
    {
        var now = time.GetUtcNow().UtcDateTime;
        await using var db = dbFactory.CreateDbContext();
        var query = db.Set<SilenceRecord>().AsNoTracking();
        if (!request.IncludeExpired) query = query.Where(s => s.EndsAt > now);
        var rows = await query.OrderBy(s => s.EndsAt).Take(5000).ToListAsync(context.CancellationToken);
        var response = new ListSilencesResponse();
        response.Silences.AddRange(rows.Select(s => ToProto(s, now)));
        return response;
    }

    public override async Task<Silence> ExpireSilence(ExpireSilenceRequest request, ServerCallContext context)
    {
        var now = time.GetUtcNow().UtcDateTime;
        await using var db = dbFactory.CreateDbContext();
        var row = await db.Set<SilenceRecord>().FirstOrDefaultAsync(s => s.Id == request.Id, context.CancellationToken)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"id: silence '{request.Id}' does not exist"));
        if (row.EndsAt <= now) throw new RpcException(new Status(StatusCode.FailedPrecondition, $"id: silence '{request.Id}' already expired at {row.EndsAt:O}"));
        row.EndsAt = now;
        row.ExpiredAt = now;
        audit.Add(db, context.Actor(), "silence.expired", target: $"silence:{row.Id}");
        await db.SaveChangesAsync(context.CancellationToken);
        return ToProto(row, now);
    }

    internal static Silence ToProto(SilenceRecord s, DateTime now)
    {
        var silence = new Silence
        {
            Id = s.Id, StartsAt = Timestamp.FromDateTime(s.StartsAt), EndsAt = Timestamp.FromDateTime(s.EndsAt), Comment = s.Comment,
            CreatedBy = s.CreatedBy, CreatedAt = Timestamp.FromDateTime(s.CreatedAt),
            State = s.EndsAt <= now ? "expired" : s.StartsAt > now ? "pending" : "active",
        };
        silence.Matchers.AddRange(JsonSerializer.Deserialize<List<string>>(s.MatchersJson) ?? []);
        return silence;
    }
}
