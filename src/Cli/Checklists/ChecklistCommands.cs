using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.RegularExpressions;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;

namespace Fleet.Cli.Checklists;

/// <summary>
/// <c>fleetctl checklist [--period P]</c>: the runbook's checklists, each item done, pending or missed with its evidence;
/// <c>fleetctl checklist sign ITEM --comment TEXT</c>: an operator's sign-off of a manual item.
/// </summary>
internal static partial class ChecklistCommands
{
    private const string PeriodForms = "YYYY-MM-DD, YYYY-Www, YYYY-MM or YYYY-Qn";

    public static Command Build(CliContext context)
    {
        var period = PeriodOption("Only this UTC period: a day (2026-11-28), ISO week (2026-W48), month (2026-11) or quarter (2026-Q4) [default: the current day, week, month and quarter]");
        var json = new Option<bool>("--json") { Description = "Print the REST API's JSON (one object) instead of tables" };
        var checklist = new Command("checklist", "Show the maintenance checklists: each item done, pending or missed, with its evidence") { period, json };
        checklist.Aliases.Add("checklists");
        checklist.Add(BuildSign(context));
        checklist.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Protocol.V1.Checklists.ChecklistsClient(session.CallInvoker);
            var response = await client.GetChecklistsAsync(new GetChecklistsRequest { Period = parse.GetValue(period)?.Trim() ?? "" }, cancellationToken: ct);
            if (parse.GetValue(json))
            {
                ProtoJson.Write(session.Out, response);
                return ExitCodes.Ok;
            }
            var first = true;
            foreach (var p in response.Periods)
            {
                if (!first) await session.Out.WriteLineAsync();
                first = false;
                WritePeriod(session.Out, p);
            }
            return ExitCodes.Ok;
        }, ct));
        return checklist;
    }

    private static Command BuildSign(CliContext context)
    {
        var item = new Argument<string>("item") { Description = "The item's ID, e.g. compliance-audit (see fleetctl checklist)" };
        item.Validators.Add(result =>
        {
            if (string.IsNullOrWhiteSpace(result.GetValueOrDefault<string>())) result.AddError("the item ID must not be empty");
        });
        var comment = new Option<string>("--comment", "-m") { Description = "What was done (a ticket, report or note); required", HelpName = "text", Required = true };
        comment.Validators.Add(result =>
        {
            if (string.IsNullOrWhiteSpace(result.GetValueOrDefault<string>())) result.AddError("--comment must not be empty");
        });
        var period = PeriodOption("The period signed for, of the item's kind [default: the item's current day, week, month or quarter]", allowCurrent: true);
        var json = new Option<bool>("--json") { Description = "Print the signed item as the REST API's JSON" };
        var sign = new Command("sign", "Sign off a manual checklist item for a period, with a comment (audited; once per item and period)") { item, comment, period, json };
        sign.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Protocol.V1.Checklists.ChecklistsClient(session.CallInvoker);
            var signed = await client.SignChecklistItemAsync(new SignChecklistItemRequest
            {
                Item = parse.GetRequiredValue(item).Trim(),
                Comment = parse.GetRequiredValue(comment).Trim(),
                Period = parse.GetValue(period)?.Trim() ?? "",
            }, cancellationToken: ct);
            if (parse.GetValue(json))
            {
                ProtoJson.Write(session.Out, signed);
                return ExitCodes.Ok;
            }
            await session.Out.WriteLineAsync($"Signed off {signed.Id} ({signed.Title}) for {signed.Period}: {Evidence(signed)}");
            return ExitCodes.Ok;
        }, ct));
        return sign;
    }

    private static Option<string> PeriodOption(string description, bool allowCurrent = false)
    {
        var option = new Option<string>("--period", "-p") { Description = description, HelpName = "period" };
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count == 0) return;
            var raw = result.Tokens[^1].Value.Trim();
            if (PeriodPattern().IsMatch(raw) || (allowCurrent && string.Equals(raw, "current", StringComparison.OrdinalIgnoreCase))) return;
            result.AddError($"invalid --period value '{result.Tokens[^1].Value}': expected {PeriodForms}{(allowCurrent ? " or current" : "")}");
        });
        return option;
    }

    /// <summary>"Weekly 2026-W48 (2026-11-23 to 2026-11-29 UTC): 2 done, 1 pending, 0 missed", then a table of the items.</summary>
    internal static void WritePeriod(TextWriter writer, ChecklistPeriod period)
    {
        var start = period.Start.ToDateTime();
        var lastDay = period.End.ToDateTime().AddDays(-1);
        var span = start.Date == lastDay.Date ? $"{start:yyyy-MM-dd}" : $"{start:yyyy-MM-dd} to {lastDay:yyyy-MM-dd}";
        int Count(ChecklistItemStatus s) => period.Items.Count(i => i.Status == s);
        writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Capitalize(period.Kind)} {period.Period} ({span} UTC{(period.Over ? ", over" : "")}): {Count(ChecklistItemStatus.Done)} done, {Count(ChecklistItemStatus.Pending)} pending, {Count(ChecklistItemStatus.Missed)} missed"));
        if (period.Items.Count == 0)
        {
            writer.WriteLine("  (no items)");
            return;
        }
        var table = new TextTable("STATUS", "ITEM", "KIND", "EVIDENCE");
        foreach (var item in period.Items)
            table.AddRow(Symbol(item.Status), item.Id, item.Automatic ? "auto" : "manual", Evidence(item));
        table.WriteTo(writer, "  ");
    }

    internal static string Symbol(ChecklistItemStatus status) => status switch
    {
        ChecklistItemStatus.Done => "[x] done",
        ChecklistItemStatus.Missed => "[!] missed",
        _ => "[ ] pending",
    };

    /// <summary>The newest run (and how many more), the sign-off, or what would satisfy the item.</summary>
    internal static string Evidence(ChecklistItem item)
    {
        if (item.SignOff is { } s)
            return string.Create(CultureInfo.InvariantCulture, $"signed by {s.SignedBy} at {s.SignedAt.ToDateTime():yyyy-MM-dd HH:mm}Z: {s.Comment}");
        if (item.Runs.Count > 0)
        {
            var run = item.Runs[0];
            var more = item.RunCount > 1 ? string.Create(CultureInfo.InvariantCulture, $" (+{item.RunCount - 1} more)") : "";
            return string.Create(CultureInfo.InvariantCulture, $"run {run.RunId} {run.Task} finished {run.FinishedAt.ToDateTime():yyyy-MM-dd HH:mm:ss}Z{more}");
        }
        if (item.Automatic)
            return (item.Status == ChecklistItemStatus.Missed ? "no successful run of " : "waiting for a successful run of ") + string.Join(" or ", item.Tasks);
        return item.Status == ChecklistItemStatus.Missed ? "not signed off" : $"sign: fleetctl checklist sign {item.Id} --comment ...";
    }

    private static string Capitalize(string text) => text.Length == 0 ? text : char.ToUpperInvariant(text[0]) + text[1..];

    [GeneratedRegex(@"^\d{4}-(?:[Ww]\d{2}|[Qq]\d|\d{2}(?:-\d{2})?)$")]
    private static partial Regex PeriodPattern();
}
