using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;

namespace Fleet.Cli.Alerts;

/// <summary><c>fleetctl alerts [--state firing] [--json]</c>, <c>alerts ack ID --comment …</c>, <c>alerts history</c>.</summary>
internal static class AlertsCommands
{
    private static readonly string[] States = ["pending", "firing", "resolved", "inactive", "all"];

    public static Command Build(CliContext context)
    {
        var state = new Option<string>("--state")
        {
            Description = "Only alerts in this state (default: pending and firing)",
            HelpName = string.Join("|", States),
            CustomParser = ParseState,
        };
        var rule = new Option<string>("--rule") { Description = "Only alerts of this rule" };
        var json = new Option<bool>("--json") { Description = "Print JSON Lines (one alert per line, the REST API's field names)" };
        var alerts = new Command("alerts", "List alerts (pending and firing unless --state), acknowledge one, show the history") { state, rule, json };
        alerts.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Fleet.Protocol.V1.Alerts.AlertsClient(session.CallInvoker);
            var response = await client.ListAlertsAsync(new ListAlertsRequest { State = parse.GetValue(state) ?? "", Rule = parse.GetValue(rule) ?? "" }, cancellationToken: ct);
            var sorted = response.Alerts.OrderBy(a => SeverityRank(a.Severity)).ThenBy(a => a.RuleName, StringComparer.Ordinal)
                .ThenBy(a => a.Labels.GetValueOrDefault("host") ?? "", StringComparer.Ordinal).ThenBy(a => a.Id).ToList();
            if (parse.GetValue(json))
            {
                foreach (var a in sorted) await JsonLines.WriteAsync(session.Out, a, ct);
                return ExitCodes.Ok;
            }
            if (sorted.Count == 0)
            {
                await context.Environment.Error.WriteLineAsync("No alerts.");
                return ExitCodes.Ok;
            }
            var table = new TextTable("ID", "STATE", "SEVERITY", "RULE", "HOST", "LABELS", "VALUE", "SINCE", "SUMMARY");
            foreach (var a in sorted)
            {
                var state = a.State + (a.AcknowledgedAt is null ? "" : " (acked)") + (a.Silenced ? " (silenced)" : "");
                table.AddRow(a.Id.ToString(CultureInfo.InvariantCulture), state, a.Severity, a.RuleName, a.Labels.GetValueOrDefault("host") ?? "",
                    OtherLabels(a.Labels), a.Value.ToString("0.###", CultureInfo.InvariantCulture),
                    Age.Ago(a.State == "firing" ? a.FiringSince : a.State == "resolved" ? a.ResolvedAt : a.ActiveSince, session.Time),
                    a.Annotations.GetValueOrDefault("summary") ?? "");
            }
            table.WriteTo(session.Out);
            return ExitCodes.Ok;
        }, ct));
        alerts.Add(BuildAck(context));
        alerts.Add(BuildHistory(context));
        return alerts;
    }

    private static Command BuildAck(CliContext context)
    {
        var id = new Argument<long>("ID") { Description = "The alert's id (fleetctl alerts)" };
        var comment = new Option<string>("--comment", "-m") { Description = "Why, or who is on it (stored with the acknowledgement and audited)" };
        var ack = new Command("ack", "Acknowledge an alert: recorded and audited, repeats of this episode are suppressed") { id, comment };
        ack.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Fleet.Protocol.V1.Alerts.AlertsClient(session.CallInvoker);
            var alert = await client.AcknowledgeAlertAsync(new AcknowledgeAlertRequest { Id = parse.GetValue(id), Comment = parse.GetValue(comment) ?? "" }, cancellationToken: ct);
            await session.Out.WriteLineAsync($"alert {alert.Id} ({alert.RuleName}{Host(alert.Labels)}) acknowledged by {alert.AcknowledgedBy}");
            return ExitCodes.Ok;
        }, ct));
        return ack;
    }

    private static Command BuildHistory(CliContext context)
    {
        var rule = new Option<string>("--rule") { Description = "Only transitions of this rule" };
        var alertId = new Option<long>("--alert") { Description = "Only transitions of this alert" };
        var limit = Paging.LimitOption(50, "transitions");
        var json = new Option<bool>("--json") { Description = "Print JSON Lines" };
        var history = new Command("history", "Alert transitions (pending, firing, resolved, acknowledged), newest first") { rule, alertId, limit, json };
        history.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Fleet.Protocol.V1.Alerts.AlertsClient(session.CallInvoker);
            var response = await client.ListAlertHistoryAsync(new ListAlertHistoryRequest
            {
                Rule = parse.GetValue(rule) ?? "", AlertId = parse.GetValue(alertId), Limit = Math.Min(parse.GetValue(limit), 5000),
            }, cancellationToken: ct);
            if (parse.GetValue(json))
            {
                foreach (var t in response.Transitions) await JsonLines.WriteAsync(session.Out, t, ct);
                return ExitCodes.Ok;
            }
            var table = new TextTable("TIME", "KIND", "SEVERITY", "RULE", "HOST", "EPISODE", "VALUE");
            foreach (var t in response.Transitions)
                table.AddRow(t.Time.ToDateTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture), t.Kind, t.Severity, t.RuleName,
                    t.Labels.GetValueOrDefault("host") ?? "", t.Episode.ToString(CultureInfo.InvariantCulture), t.Value.ToString("0.###", CultureInfo.InvariantCulture));
            table.WriteTo(session.Out);
            return ExitCodes.Ok;
        }, ct));
        return history;
    }

    private static string ParseState(ArgumentResult result)
    {
        var raw = result.Tokens[^1].Value;
        var value = raw.Trim().ToLowerInvariant();
        if (Array.IndexOf(States, value) < 0) result.AddError($"invalid --state value '{raw}': expected {string.Join(", ", States)}");
        return value;
    }

    private static int SeverityRank(string severity) => severity switch { "critical" => 0, "warning" => 1, "info" => 2, _ => 3 };

    private static string Host(Google.Protobuf.Collections.MapField<string, string> labels) => labels.TryGetValue("host", out var h) ? $" on {h}" : "";

    internal static string OtherLabels(Google.Protobuf.Collections.MapField<string, string> labels) =>
        string.Join(",", labels.Where(l => l.Key is not ("host" or "agent_id" or "alertname")).OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"));
}

/// <summary><c>fleetctl rules list|show|create -f rule.yaml [--replace]|delete NAME</c>.</summary>
internal static class RulesCommands
{
    public static Command Build(CliContext context)
    {
        var rules = new Command("rules", "List, show, create and delete alert rules");
        rules.Add(BuildList(context));
        rules.Add(BuildShow(context));
        rules.Add(BuildCreate(context));
        rules.Add(BuildDelete(context));
        return rules;
    }

    private static Command BuildList(CliContext context)
    {
        var json = new Option<bool>("--json") { Description = "Print JSON Lines (one rule per line)" };
        var list = new Command("list", "List the rules") { json };
        list.Aliases.Add("ls");
        list.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var response = await new Fleet.Protocol.V1.Rules.RulesClient(session.CallInvoker).ListRulesAsync(new ListRulesRequest(), cancellationToken: ct);
            if (parse.GetValue(json))
            {
                foreach (var r in response.Rules) await JsonLines.WriteAsync(session.Out, r, ct);
                return ExitCodes.Ok;
            }
            if (response.Rules.Count == 0)
            {
                await context.Environment.Error.WriteLineAsync("No rules.");
                return ExitCodes.Ok;
            }
            var table = new TextTable("NAME", "KIND", "SEVERITY", "CONDITION", "FOR", "STATUS");
            foreach (var r in response.Rules)
                table.AddRow(r.Name, r.Kind, r.Severity, Condition(r), r.For, (r.Disabled ? "disabled" : "enabled") + (r.DefaultRule ? ", default" : ""));
            table.WriteTo(session.Out);
            return ExitCodes.Ok;
        }, ct));
        return list;
    }

    internal static string Condition(Rule r) => r.Kind switch
    {
        "threshold" => r.Expr + (r.HasClear ? $" (clear {r.Clear.ToString(CultureInfo.InvariantCulture)})" : ""),
        "predict" => r.Predict,
        "probe" => $"probe {r.Probe} fails {(r.Failures > 0 ? r.Failures : 3)}x",
        "offline" => $"offline {(r.For.Length > 0 ? r.For : "5m")}",
        "run_failed" => $"task {(r.Task.Length > 0 ? r.Task : "*")} failed",
        "log_rate" => $"logs{(r.LogSeverity.Length > 0 ? " severity>=" + r.LogSeverity : "")}{(r.Query.Length > 0 ? " q=" + r.Query : "")} > {r.MoreThan} in {(r.Within.Length > 0 ? r.Within : "5m")}{(r.By.Length > 0 ? " by " + r.By : "")}",
        "outbox_dropped" => "agent event outbox.dropped",
        "notification_dead" => $"notification dead within {(r.Within.Length > 0 ? r.Within : "1h")}",
        "window_missed" => $"window {(r.Schedule.Length > 0 ? r.Schedule : "*")} missed within {(r.Within.Length > 0 ? r.Within : "24h")}",
        "checklist_missed" => $"checklist {(r.Checklist.Length > 0 ? r.Checklist : "*")} item missed",
        "tls_expiry" => $"tls {(r.Probe.Length > 0 ? r.Probe : "*")} expires < {(r.HasDays ? r.Days : 14)}d",
        _ => "always",
    };

    private static Command BuildShow(CliContext context)
    {
        var name = new Argument<string>("NAME");
        var show = new Command("show", "Show one rule (JSON)") { name };
        show.Aliases.Add("get");
        show.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var rule = await new Fleet.Protocol.V1.Rules.RulesClient(session.CallInvoker).GetRuleAsync(new GetRuleRequest { Name = parse.GetValue(name) ?? "" }, cancellationToken: ct);
            ProtoJson.Write(session.Out, rule);
            return ExitCodes.Ok;
        }, ct));
        return show;
    }

    private static Command BuildCreate(CliContext context)
    {
        var file = new Option<FileInfo>("--file", "-f") { Description = "The rule as YAML (see deploy/rules/ for examples; kinds: threshold, predict, probe, offline, run_failed, log_rate, outbox_dropped, watchdog, window_missed, checklist_missed, tls_expiry, notification_dead)", Required = true };
        var replace = new Option<bool>("--replace") { Description = "Update the rule of that name if it exists" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Validate only" };
        var create = new Command("create", "Create (or with --replace update) a rule from a YAML file; it is validated first") { file, replace, dryRun };
        create.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var path = parse.GetValue(file)!;
            string yaml;
            try { yaml = await File.ReadAllTextAsync(path.FullName, ct); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                await context.Environment.Error.WriteLineAsync($"fleetctl: cannot read --file '{path}': {ex.Message}");
                return ExitCodes.Failure;
            }
            var client = new Fleet.Protocol.V1.Rules.RulesClient(session.CallInvoker);
            var request = new CreateRuleRequest { Yaml = yaml, Replace = parse.GetValue(replace) };
            var rule = parse.GetValue(dryRun) ? await client.ValidateRuleAsync(request, cancellationToken: ct) : await client.CreateRuleAsync(request, cancellationToken: ct);
            await session.Out.WriteLineAsync(parse.GetValue(dryRun) ? $"rule {rule.Name} is valid" : $"rule {rule.Name} saved ({rule.Kind}, {rule.Severity})");
            return ExitCodes.Ok;
        }, ct));
        return create;
    }

    private static Command BuildDelete(CliContext context)
    {
        var name = new Argument<string>("NAME");
        var delete = new Command("delete", "Delete a rule; its open alerts resolve") { name };
        delete.Aliases.Add("rm");
        delete.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var response = await new Fleet.Protocol.V1.Rules.RulesClient(session.CallInvoker).DeleteRuleAsync(new DeleteRuleRequest { Name = parse.GetValue(name) ?? "" }, cancellationToken: ct);
            await session.Out.WriteLineAsync($"rule {parse.GetValue(name)} deleted ({response.AlertsResolved} open alerts resolved)");
            return ExitCodes.Ok;
        }, ct));
        return delete;
    }
}

/// <summary><c>fleetctl silence add --matcher host=web-1 --for 2h --comment …</c>, <c>silence list</c>, <c>silence expire ID</c>.</summary>
internal static class SilenceCommands
{
    public static Command Build(CliContext context)
    {
        var silence = new Command("silence", "Silence alerts by label matchers for a while (audited)");
        silence.Aliases.Add("silences");
        silence.Add(BuildAdd(context));
        silence.Add(BuildList(context));
        silence.Add(BuildExpire(context));
        return silence;
    }

    private static Command BuildAdd(CliContext context)
    {
        var matchers = new Option<string[]>("--matcher")
        {
            Description = "A label matcher: name=value, name!=value or name=~regex (repeat for several; all must match)",
            Required = true, AllowMultipleArgumentsPerToken = false,
        };
        var duration = new Option<TimeSpan>("--for")
        {
            Description = "How long (e.g. 30m, 2h, 1d)", Required = true, HelpName = "duration",
            CustomParser = result =>
            {
                var raw = result.Tokens[^1].Value;
                if (DurationText.TryParse(raw, out var d) && d > TimeSpan.Zero && d <= TimeSpan.FromDays(365)) return d;
                result.AddError($"invalid --for value '{raw}': expected a duration such as 30m, 2h or 1d (at most 365d)");
                return TimeSpan.Zero;
            },
        };
        var comment = new Option<string>("--comment", "-m") { Description = "Why (required: whoever sees the silence later reads it)", Required = true };
        var add = new Command("add", "Create a silence starting now") { matchers, duration, comment };
        add.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var request = new CreateSilenceRequest { Duration = Fleet.Protocol.Durations.Format(parse.GetValue(duration)), Comment = parse.GetValue(comment) ?? "" };
            request.Matchers.AddRange(parse.GetValue(matchers) ?? []);
            var s = await new Fleet.Protocol.V1.Silences.SilencesClient(session.CallInvoker).CreateSilenceAsync(request, cancellationToken: ct);
            await session.Out.WriteLineAsync($"silence {s.Id} until {s.EndsAt.ToDateTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)}: {string.Join(" ", s.Matchers)}");
            return ExitCodes.Ok;
        }, ct));
        return add;
    }

    private static Command BuildList(CliContext context)
    {
        var all = new Option<bool>("--all") { Description = "Include expired silences" };
        var json = new Option<bool>("--json") { Description = "Print JSON Lines (one silence per line)" };
        var list = new Command("list", "List active and pending silences") { all, json };
        list.Aliases.Add("ls");
        list.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var response = await new Fleet.Protocol.V1.Silences.SilencesClient(session.CallInvoker)
                .ListSilencesAsync(new ListSilencesRequest { IncludeExpired = parse.GetValue(all) }, cancellationToken: ct);
            if (parse.GetValue(json))
            {
                foreach (var s in response.Silences) await JsonLines.WriteAsync(session.Out, s, ct);
                return ExitCodes.Ok;
            }
            if (response.Silences.Count == 0)
            {
                await context.Environment.Error.WriteLineAsync("No silences.");
                return ExitCodes.Ok;
            }
            var table = new TextTable("ID", "STATE", "MATCHERS", "ENDS", "CREATED BY", "COMMENT");
            foreach (var s in response.Silences)
                table.AddRow(s.Id, s.State, string.Join(" ", s.Matchers), s.EndsAt.ToDateTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture), s.CreatedBy, s.Comment);
            table.WriteTo(session.Out);
            return ExitCodes.Ok;
        }, ct));
        return list;
    }

    private static Command BuildExpire(CliContext context)
    {
        var id = new Argument<string>("ID");
        var expire = new Command("expire", "End a silence now (audited)") { id };
        expire.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var s = await new Fleet.Protocol.V1.Silences.SilencesClient(session.CallInvoker).ExpireSilenceAsync(new ExpireSilenceRequest { Id = parse.GetValue(id) ?? "" }, cancellationToken: ct);
            await session.Out.WriteLineAsync($"silence {s.Id} expired");
            return ExitCodes.Ok;
        }, ct));
        return expire;
    }
}
