using System.CommandLine;
using System.CommandLine.Parsing;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Agents;

/// <summary><c>fleetctl agents list|show|remove</c>: the agents the coordinator knows.</summary>
internal static class AgentsCommands
{
    public static Command Build(CliContext context)
    {
        var agents = new Command("agents", "List, inspect and remove agents");
        agents.Add(BuildList(context));
        agents.Add(BuildShow(context));
        agents.Add(BuildRemove(context));
        return agents;
    }

    private static Command BuildList(CliContext context)
    {
        var status = new Option<AgentStatus>("--status")
        {
            Description = "Only agents with this status: online or offline",
            HelpName = "online|offline",
            CustomParser = ParseStatus,
        };
        var json = JsonOption();
        var list = new Command("list", "List agents, sorted by hostname") { status, json };
        list.Aliases.Add("ls");
        list.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var wanted = parse.GetValue(status);
            var client = new Fleet.Protocol.V1.Agents.AgentsClient(session.CallInvoker);
            var response = await client.ListAgentsAsync(new ListAgentsRequest { Status = wanted }, cancellationToken: ct);

            var sorted = response.Agents
                .Where(a => wanted == AgentStatus.Unspecified || a.Status == wanted)
                .OrderBy(a => a.Hostname, StringComparer.OrdinalIgnoreCase)
                .ThenBy(a => a.Hostname, StringComparer.Ordinal)
                .ThenBy(a => a.Id, StringComparer.Ordinal)
                .ToList();

            if (parse.GetValue(json))
            {
                var result = new ListAgentsResponse();
                result.Agents.AddRange(sorted);
                ProtoJson.Write(session.Out, result);
                return ExitCodes.Ok;
            }

            if (sorted.Count == 0)
            {
                await context.Environment.Error.WriteLineAsync(wanted == AgentStatus.Unspecified ? "No agents." : $"No {StatusWord(wanted)} agents.");
                return ExitCodes.Ok;
            }

            var table = new TextTable("ID", "HOSTNAME", "STATUS", "VERSION", "OS", "LAST SEEN", "TAGS");
            foreach (var agent in sorted)
            {
                table.AddRow(agent.Id, agent.Hostname, StatusWord(agent.Status), agent.AgentVersion, agent.Os,
                    Age.Ago(agent.LastSeen, session.Time), Tags(agent));
            }
            table.WriteTo(session.Out);
            return ExitCodes.Ok;
        }, ct));
        return list;
    }

    private static Command BuildShow(CliContext context)
    {
        var id = IdArgument();
        var json = JsonOption();
        var show = new Command("show", "Show one agent in detail, including its tasks") { id, json };
        show.Aliases.Add("get");
        show.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Fleet.Protocol.V1.Agents.AgentsClient(session.CallInvoker);
            var agent = await client.GetAgentAsync(new GetAgentRequest { Id = parse.GetRequiredValue(id) }, cancellationToken: ct);
            if (parse.GetValue(json))
            {
                ProtoJson.Write(session.Out, agent);
            }
            else
            {
                WriteDetail(session.Out, agent, session.Time);
            }
            return ExitCodes.Ok;
        }, ct));
        return show;
    }

    private static Command BuildRemove(CliContext context)
    {
        var id = IdArgument();
        var remove = new Command("remove", "Forget an agent; closes its stream if it is connected") { id };
        remove.Aliases.Add("rm");
        remove.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = new Fleet.Protocol.V1.Agents.AgentsClient(session.CallInvoker);
            var requested = parse.GetRequiredValue(id);
            var response = await client.RemoveAgentAsync(new RemoveAgentRequest { Id = requested }, cancellationToken: ct);
            var removed = response.Id.Length > 0 ? response.Id : requested;
            await session.Out.WriteLineAsync(response.Disconnected
                ? $"Removed agent {removed} and closed its live stream."
                : $"Removed agent {removed} (it was not connected).");
            return ExitCodes.Ok;
        }, ct));
        return remove;
    }

    private static void WriteDetail(TextWriter output, Agent agent, TimeProvider time)
    {
        var fields = new (string Label, string Value)[]
        {
            ("ID", agent.Id),
            ("Hostname", agent.Hostname),
            ("Status", StatusWord(agent.Status)),
            ("Replica", agent.Replica),
            ("Agent version", agent.AgentVersion),
            ("Protocol version", agent.ProtocolVersion == 0 ? "" : agent.ProtocolVersion.ToString()),
            ("OS", agent.Os),
            ("Kernel", agent.Kernel),
            ("Machine ID", agent.MachineId),
            ("First seen", Age.WithAge(agent.FirstSeen, time)),
            ("Last seen", Age.WithAge(agent.LastSeen, time)),
            ("Tags", Tags(agent)),
        };
        var width = fields.Max(f => f.Label.Length) + 2;
        foreach (var (label, value) in fields)
        {
            output.WriteLine($"{(label + ":").PadRight(width)}{(value.Length == 0 ? "-" : value)}");
        }

        if (agent.Tasks.Count == 0)
        {
            output.WriteLine($"{"Tasks:".PadRight(width)}none");
            return;
        }
        output.WriteLine($"Tasks ({agent.Tasks.Count}):");
        foreach (var task in agent.Tasks.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            var destructive = task.Destructive ? " [destructive]" : "";
            var description = task.Description.Length > 0 ? $" - {task.Description}" : "";
            output.WriteLine($"  {task.Name}{destructive}{description}");
            if (task.DefaultTimeout is not null || task.MaxTimeout is not null)
            {
                var limits = new List<string>();
                if (task.DefaultTimeout is not null) limits.Add($"default {Format(task.DefaultTimeout)}");
                if (task.MaxTimeout is not null) limits.Add($"max {Format(task.MaxTimeout)}");
                output.WriteLine($"    timeout: {string.Join(", ", limits)}");
            }
            foreach (var parameter in task.Parameters)
            {
                output.WriteLine($"    parameter {parameter.Name}: {ParameterTraits(parameter)}"
                    + (parameter.Description.Length > 0 ? $" - {parameter.Description}" : ""));
            }
        }
    }

    private static string ParameterTraits(ParameterSchema parameter)
    {
        var traits = new List<string> { parameter.Type == ParameterSchema.Types.Type.Unspecified ? "string" : parameter.Type.ToString().ToLowerInvariant() };
        if (parameter.Required) traits.Add("required");
        if (parameter.Secret) traits.Add("secret");
        if (parameter.DefaultValue.Length > 0) traits.Add($"default {parameter.DefaultValue}");
        if (parameter.Pattern.Length > 0) traits.Add($"pattern {parameter.Pattern}");
        return string.Join(", ", traits);
    }

    private static string Format(Google.Protobuf.WellKnownTypes.Duration duration) => DurationText.Format(duration.ToTimeSpan());

    internal static string StatusWord(AgentStatus status) => status switch
    {
        AgentStatus.Online => "online",
        AgentStatus.Offline => "offline",
        _ => "unknown",
    };

    internal static string Tags(Agent agent) =>
        string.Join(",", agent.Tags.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => $"{t.Key}={t.Value}"));

    private static AgentStatus ParseStatus(ArgumentResult result)
    {
        var raw = result.Tokens[^1].Value;
        switch (raw.Trim().ToLowerInvariant())
        {
            case "online": return AgentStatus.Online;
            case "offline": return AgentStatus.Offline;
            default:
                result.AddError($"invalid --status value '{raw}': expected online or offline");
                return AgentStatus.Unspecified;
        }
    }

    private static Option<bool> JsonOption() => new("--json") { Description = "Print JSON (the REST API's field names) instead of text" };

    private static Argument<string> IdArgument()
    {
        var id = new Argument<string>("id") { Description = "The agent ID" };
        id.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && string.IsNullOrWhiteSpace(result.Tokens[0].Value)) result.AddError("the agent ID must not be empty");
        });
        return id;
    }
}
