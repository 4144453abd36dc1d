using System.ComponentModel.DataAnnotations;
using Fleet.Coordinator.Storage;
using Google.Protobuf.WellKnownTypes;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Rule = Fleet.Protocol.V1.Rule;

namespace Fleet.Coordinator.Alerts;

/// <summary>Section "Fleet:Alerts".</summary>
public sealed class AlertsOptions : IValidatableObject
{
    public const string Section = "Fleet:Alerts";

    /// <summary>How often the timer evaluates the fleet-wide rules and promotes pending alerts whose <c>for</c> passed.</summary>
    public TimeSpan EvaluationInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Predicted-exhaustion rules read an hour of rollups or more: at most this often.</summary>
    public TimeSpan PredictInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>An open threshold alert whose series has sent nothing for this long resolves.</summary>
    public TimeSpan StaleAfter { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Load the rules of deploy/rules (built in) on first start.</summary>
    public bool DefaultRules { get; set; } = true;

    /// <summary>Load the default rules from this directory's *.yaml instead of the built-in copies.</summary>
    public string? DefaultRulesDirectory { get; set; }

    /// <summary>A log_rate rule grouped by a log field reads at most this many matching entries per evaluation.</summary>
    public int MaxLogRowsPerEvaluation { get; set; } = 200_000;

    /// <summary>Remediation also looks for due firings this often (besides being woken by this replica's transitions).</summary>
    public TimeSpan RemediationPoll { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A firing older than this gets no remediation (after a long outage the alert's cause may be gone).</summary>
    public TimeSpan RemediationLookback { get; set; } = TimeSpan.FromHours(1);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (EvaluationInterval < TimeSpan.FromSeconds(1) || EvaluationInterval > TimeSpan.FromMinutes(10))
            yield return new($"{Section}:EvaluationInterval: '{EvaluationInterval}' must be between 1 second and 10 minutes.", [nameof(EvaluationInterval)]);
        if (PredictInterval < TimeSpan.FromSeconds(1) || PredictInterval > TimeSpan.FromHours(1))
            yield return new($"{Section}:PredictInterval: '{PredictInterval}' must be between 1 second and 1 hour.", [nameof(PredictInterval)]);
        if (StaleAfter < TimeSpan.FromMinutes(1))
            yield return new($"{Section}:StaleAfter: '{StaleAfter}' must be at least 1 minute.", [nameof(StaleAfter)]);
        if (DefaultRulesDirectory is { Length: > 0 } dir && !Directory.Exists(dir))
            yield return new($"{Section}:DefaultRulesDirectory: '{dir}' does not exist.", [nameof(DefaultRulesDirectory)]);
        if (RemediationPoll < TimeSpan.FromSeconds(1) || RemediationPoll > TimeSpan.FromMinutes(10))
            yield return new($"{Section}:RemediationPoll: '{RemediationPoll}' must be between 1 second and 10 minutes.", [nameof(RemediationPoll)]);
        if (RemediationLookback < TimeSpan.FromMinutes(1) || RemediationLookback > TimeSpan.FromDays(1))
            yield return new($"{Section}:RemediationLookback: '{RemediationLookback}' must be between 1 minute and 1 day.", [nameof(RemediationLookback)]);
        if (MaxLogRowsPerEvaluation < 1000)
            yield return new($"{Section}:MaxLogRowsPerEvaluation: '{MaxLogRowsPerEvaluation}' must be at least 1000.", [nameof(MaxLogRowsPerEvaluation)]);
    }
}

/// <summary>The enabled rules, compiled; reloaded on every timer tick (other replicas' edits) and after this replica's edits.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001:Types that own disposable fields should be disposable",
    Justification = "The SemaphoreSlim's wait handle is never requested, so it holds nothing to free; disposing it could fail a reload still running at shutdown.")]
public sealed partial class AlertRuleSet(IDbContextFactory<FleetDbContext> dbFactory, ILogger<AlertRuleSet> logger)
{
    volatile IReadOnlyList<CompiledRule> current = [];
    // Never disposed (see the suppression above).
    readonly SemaphoreSlim reloading = new(1, 1);

    public IReadOnlyList<CompiledRule> Current => current;

    /// <summary>
    /// Reads the rules and makes them current. One reload at a time: a slower reload that read the table before an edit
    /// committed can never replace the list of one that read after it (the edit would vanish until the next tick).
    /// </summary>
    public async Task ReloadAsync(CancellationToken cancellationToken)
    {
        await reloading.WaitAsync(cancellationToken);
        try { await ReloadOnceAsync(cancellationToken); }
        finally { reloading.Release(); }
    }

    async Task ReloadOnceAsync(CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var rows = await db.Set<AlertRuleRecord>().AsNoTracking().Where(r => !r.Disabled).OrderBy(r => r.Id).ToListAsync(cancellationToken);
        var compiled = new List<CompiledRule>(rows.Count);
        foreach (var row in rows)
        {
            try { compiled.Add(RuleCompiler.Compile(ToRule(row), row.Id)); }
            catch (Exception ex) when (ex is RuleInvalidException or Google.Protobuf.InvalidProtocolBufferException)
            {
                LogInvalid(row.Name, ex.Message); // validated on save: only a rule stored by an older version gets here
            }
        }
        current = compiled;
    }

    public static Rule ToRule(AlertRuleRecord row)
    {
        var rule = RuleCompiler.FromJson(row.DefinitionJson);
        rule.Id = row.Id;
        rule.Name = row.Name;
        rule.DefaultRule = row.DefaultRule;
        rule.Disabled = row.Disabled;
        rule.UpdatedAt = Timestamp.FromDateTime(row.UpdatedAt);
        return rule;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Alert rule {Rule} is not valid and is not evaluated: {Problem}")]
    partial void LogInvalid(string rule, string problem);
}

/// <summary>
/// Offers each shipped rule (deploy/rules/*.yaml, built into the coordinator) once: on first start all of them, after an
/// upgrade the ones the installation has not been offered yet. A marker row per rule name, in the same transaction as
/// the rule, remembers the offer, so an operator's edits and deletions stick across restarts and upgrades, and a name
/// the operator already uses is left alone. A default rule that does not validate stops the start, naming the file
/// and the field.
/// </summary>
public sealed partial class DefaultRules(IDbContextFactory<FleetDbContext> dbFactory, IOptions<AlertsOptions> options, TimeProvider time, ILogger<DefaultRules> logger)
{
    /// <summary>The single marker of installations from before per-rule markers: it stands for the rules in <see cref="FirstSet"/>.</summary>
    public const string LegacyMarkerKey = "defaults-v1";

    /// <summary>The rules the first release shipped (what <see cref="LegacyMarkerKey"/> with a count of 11 says were offered).</summary>
    public static readonly IReadOnlySet<string> FirstSet = new HashSet<string>(StringComparer.Ordinal)
    {
        "agent-offline", "disk-full-predicted", "disk-usage", "error-log-rate", "health-endpoint-failing", "load-high",
        "memory-high", "outbox-dropped", "run-failed", "ssh-failed-logins", "watchdog",
    };

    /// <summary>
    /// What a legacy marker of a later build stands for: builds between the first release and per-rule markers wrote the
    /// same marker after offering these four too (its count says so).
    /// </summary>
    public static readonly IReadOnlySet<string> SecondSet = new HashSet<string>(FirstSet.Concat(["checklist-missed", "notification-dead", "tls-expiring", "window-missed"]), StringComparer.Ordinal);

    /// <summary>The marker row of one offered rule (keys are at most 64 characters; a longer name is hashed).</summary>
    public static string MarkerKey(string ruleName) =>
        ruleName.Length <= 59 ? "rule:" + ruleName
            : "rule#" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(ruleName)))[..59];

    /// <summary>The shipped rules (file name, YAML).</summary>
    public IEnumerable<(string File, string Yaml)> Files()
    {
        if (options.Value.DefaultRulesDirectory is { Length: > 0 } dir)
        {
            foreach (var path in Directory.EnumerateFiles(dir, "*.yaml").Order(StringComparer.Ordinal))
                yield return (Path.GetFileName(path), File.ReadAllText(path));
            yield break;
        }
        var assembly = typeof(DefaultRules).Assembly;
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith("rules/", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            using var reader = new StreamReader(assembly.GetManifestResourceStream(name)!);
            yield return (name["rules/".Length..], reader.ReadToEnd());
        }
    }

    public IReadOnlyList<Rule> Parse()
    {
        var rules = new List<Rule>();
        foreach (var (file, yaml) in Files())
        {
            try
            {
                var rule = RuleCompiler.FromYaml(yaml, file);
                RuleCompiler.Compile(rule);
                rules.Add(rule);
            }
            catch (RuleInvalidException ex)
            {
                throw new OptionsValidationException(AlertsOptions.Section, typeof(AlertsOptions), [$"default rule {file}: {ex.Message}"]);
            }
        }
        return rules;
    }

    /// <summary>Adds the shipped rules this installation has not been offered yet; true when this call added any.</summary>
    public async Task<bool> EnsureLoadedAsync(CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var rows = await db.Set<AlertRuleDefaultsMarker>().Select(m => new { m.Key, m.Count }).ToListAsync(cancellationToken);
        var markers = rows.Select(m => m.Key).ToHashSet(StringComparer.Ordinal);
        var legacy = rows.FirstOrDefault(m => m.Key == LegacyMarkerKey);
        var offered = legacy is null ? new HashSet<string>() : legacy.Count > FirstSet.Count ? SecondSet : FirstSet;
        var todo = Parse().Where(r => !offered.Contains(r.Name) && !markers.Contains(MarkerKey(r.Name))).ToList();
        if (todo.Count == 0) return false;
        var now = time.GetUtcNow().UtcDateTime;
        var existing = (await db.Set<AlertRuleRecord>().Select(r => r.Name).ToListAsync(cancellationToken)).ToHashSet(StringComparer.Ordinal);
        await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
        var added = new List<string>();
        foreach (var rule in todo)
        {
            db.Set<AlertRuleDefaultsMarker>().Add(new AlertRuleDefaultsMarker { Key = MarkerKey(rule.Name), LoadedAt = now, Count = 1 });
            if (existing.Contains(rule.Name)) continue; // the operator's rule of that name stays as it is
            added.Add(rule.Name);
            db.Set<AlertRuleRecord>().Add(new AlertRuleRecord
            {
                Name = rule.Name, Kind = rule.Kind, Severity = rule.Severity, DefinitionJson = RuleCompiler.ToJson(rule),
                Disabled = rule.Disabled, DefaultRule = true, CreatedAt = now, UpdatedAt = now,
            });
        }
        try
        {
            await db.SaveChangesAsync(cancellationToken);
            await tx.CommitAsync(cancellationToken);
        }
        catch (DbUpdateException)
        {
            return false; // another replica offered them first (the markers' keys are unique)
        }
        if (added.Count > 0) LogLoaded(added.Count, string.Join(", ", added), markers.Count == 0 ? "first start" : "new in this version");
        return added.Count > 0;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded {Count} default alert rules ({Why}): {Names}")]
    partial void LogLoaded(int count, string names, string why);
}
