using System.CommandLine;
using System.Globalization;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;

namespace Fleet.Cli.Receivers;

/// <summary><c>fleetctl receivers [--json]</c>, <c>receivers show NAME</c>, <c>receivers test NAME</c>: where alerts go, how delivery fares, a test message.</summary>
internal static class ReceiversCommands
{
    /// <summary>
    /// The deadline of a test-send unless --timeout is given: longer than the coordinator's default send timeout (15 s),
    /// so a slow receiver is reported by the coordinator ("no answer within …") rather than cut off by fleetctl.
    /// </summary>
    internal static readonly TimeSpan TestTimeout = TimeSpan.FromSeconds(30);

    public static Command Build(CliContext context)
    {
        var json = new Option<bool>("--json") { Description = "Print JSON Lines (one receiver per line, the REST API's field names)" };
        var receivers = new Command("receivers", "List the alert receivers (Slack, email, webhook) with their delivery counts; show one; send a test message") { json };
        receivers.Aliases.Add("receiver");
        receivers.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var response = await new Fleet.Protocol.V1.Receivers.ReceiversClient(session.CallInvoker).ListReceiversAsync(new ListReceiversRequest(), cancellationToken: ct);
            if (parse.GetValue(json))
            {
                foreach (var r in response.Receivers) await JsonLines.WriteAsync(session.Out, r, ct);
                return ExitCodes.Ok;
            }
            if (response.Receivers.Count == 0)
            {
                await context.Environment.Error.WriteLineAsync("No receivers (configure Fleet:Notifications:Receivers on the coordinator).");
                return ExitCodes.Ok;
            }
            var table = new TextTable("NAME", "KIND", "TARGET", "SENT/DEAD/PENDING", "LAST SENT", "LAST ERROR");
            foreach (var r in response.Receivers)
            {
                var s = r.Stats ?? new ReceiverStats();
                table.AddRow(r.Name, r.Kind, Target(r), Counts(s), s.LastSentAt is null ? "never" : Age.Ago(s.LastSentAt, session.Time), Clip(s.LastError, 60));
            }
            table.WriteTo(session.Out);
            return ExitCodes.Ok;
        }, ct));
        receivers.Add(BuildShow(context));
        receivers.Add(BuildTest(context));
        return receivers;
    }

    private static Command BuildShow(CliContext context)
    {
        var name = new Argument<string>("NAME") { Description = "The receiver's name (fleetctl receivers)" };
        var json = new Option<bool>("--json") { Description = "Print the receiver as JSON" };
        var show = new Command("show", "Show one receiver: its target, the routes that name it and its delivery counts") { name, json };
        show.Aliases.Add("get");
        show.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var receiver = await new Fleet.Protocol.V1.Receivers.ReceiversClient(session.CallInvoker)
                .GetReceiverAsync(new GetReceiverRequest { Name = parse.GetValue(name) ?? "" }, cancellationToken: ct);
            if (parse.GetValue(json)) ProtoJson.Write(session.Out, receiver);
            else WriteDetail(session.Out, receiver, session.Time);
            return ExitCodes.Ok;
        }, ct));
        return show;
    }

    private static Command BuildTest(CliContext context)
    {
        var name = new Argument<string>("NAME") { Description = "The receiver's name (fleetctl receivers)" };
        var json = new Option<bool>("--json") { Description = "Print the outcome as JSON (the exit code still says whether it was delivered)" };
        var test = new Command("test", "Send a test message to a receiver now (audited); exit 1 unless the receiver accepted it") { name, json };
        test.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var receiverName = parse.GetValue(name) ?? "";
            DateTime? deadline = parse.GetValue(context.Globals.Timeout) is null ? DateTime.UtcNow + TestTimeout : null;
            var outcome = await new Fleet.Protocol.V1.Receivers.ReceiversClient(session.CallInvoker)
                .TestReceiverAsync(new TestReceiverRequest { Name = receiverName }, deadline: deadline, cancellationToken: ct);
            if (parse.GetValue(json)) ProtoJson.Write(session.Out, outcome);
            var elapsed = outcome.ElapsedMs.ToString(CultureInfo.InvariantCulture);
            if (outcome.Delivered)
            {
                if (!parse.GetValue(json)) await session.Out.WriteLineAsync($"delivered to {outcome.Name} in {elapsed} ms");
                return ExitCodes.Ok;
            }
            var retry = outcome.RetryAfter is null ? "" : $" (the receiver asks to retry after {DurationText.Format(outcome.RetryAfter.ToTimeSpan())})";
            await context.Environment.Error.WriteLineAsync($"fleetctl: not delivered to {outcome.Name} ({outcome.Kind} {outcome.Target}) after {elapsed} ms: {outcome.Error}{retry}");
            return ExitCodes.Failure;
        }, ct));
        return test;
    }

    private static void WriteDetail(TextWriter output, Receiver r, TimeProvider time)
    {
        var s = r.Stats ?? new ReceiverStats();
        var fields = new List<(string Label, string Value)>
        {
            ("Name", r.Name),
            ("Kind", r.Kind),
            ("Target", r.Target),
        };
        if (r.Kind == "slack") fields.Add(("Channel", r.Channel));
        if (r.Kind == "email")
        {
            fields.Add(("To", string.Join(", ", r.To)));
            fields.Add(("From", r.From));
            fields.Add(("Security", r.Security));
        }
        fields.Add(("Send resolved", r.SendResolved ? "yes" : "no"));
        fields.Add(("Notifications", $"{s.Sent} sent, {s.Dead} dead, {s.Pending} pending, {s.Sending} sending, {s.Silenced} silenced"));
        fields.Add(("Last sent", Age.WithAge(s.LastSentAt, time)));
        fields.Add(("Last error", s.LastError.Length == 0 ? "" : $"{s.LastError} (notification {s.LastErrorNotificationId.ToString(CultureInfo.InvariantCulture)})"));
        var width = fields.Max(f => f.Label.Length) + 2;
        foreach (var (label, value) in fields)
            output.WriteLine($"{(label + ":").PadRight(width)}{(value.Length == 0 ? "-" : value)}");

        if (r.Routes.Count == 0)
        {
            output.WriteLine($"{"Routes:".PadRight(width)}none (no alert is routed here; a test message still is)");
            return;
        }
        output.WriteLine($"Routes ({r.Routes.Count}):");
        foreach (var route in r.Routes)
        {
            var matchers = route.Matchers.Count == 0 ? "every alert" : string.Join(" ", route.Matchers);
            var severities = route.Severities.Count == 0 ? "every severity" : string.Join(", ", route.Severities);
            output.WriteLine($"  route {route.Index.ToString(CultureInfo.InvariantCulture)}: {matchers}; {severities}");
        }
    }

    internal static string Target(Receiver r) => r.Kind == "email" && r.To.Count > 0 ? $"{r.Target} (to {string.Join(",", r.To)})" : r.Target;

    private static string Counts(ReceiverStats s) =>
        string.Create(CultureInfo.InvariantCulture, $"{s.Sent}/{s.Dead}/{s.Pending + s.Sending}");

    private static string Clip(string text, int max) => text.Length <= max ? text : text[..(max - 3)] + "...";
}
