using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.RegularExpressions;
using Fleet.Cli.Infrastructure;
using Fleet.Cli.Output;
using Fleet.Protocol.V1;
using Grpc.Core;
using SchedulesClient = Fleet.Protocol.V1.Schedules.SchedulesClient;

namespace Fleet.Cli.Schedules;

/// <summary>
/// <c>fleetctl schedules list|show|create|update|delete|pause|resume|preview|run-now|history</c>: maintenance windows,
/// and <c>fleetctl windows</c>: the windows open now.
/// </summary>
internal static partial class SchedulesCommands
{
    private const int MaxPreview = 100, DefaultPreview = 10, MaxHistory = 500, DefaultHistory = 20;

    public static Command Build(CliContext context)
    {
        var schedules = new Command("schedules", "Maintenance windows: list, define from YAML, preview, pause, run now, read their history");
        schedules.Aliases.Add("schedule");
        schedules.Add(BuildList(context));
        schedules.Add(BuildShow(context));
        schedules.Add(BuildCreate(context));
        schedules.Add(BuildUpdate(context));
        schedules.Add(BuildDelete(context));
        schedules.Add(BuildPause(context, pause: true));
        schedules.Add(BuildPause(context, pause: false));
        schedules.Add(BuildPreview(context));
        schedules.Add(BuildRunNow(context));
        schedules.Add(BuildHistory(context));
        return schedules;
    }

    /// <summary><c>fleetctl windows</c>: the maintenance windows open now, with their hosts and end time.</summary>
    public static Command BuildWindows(CliContext context)
    {
        var json = JsonOption();
        var windows = new Command("windows", "List the maintenance windows open now: schedule, end time, hosts") { json };
        windows.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var response = await Client(session).ListOpenWindowsAsync(new ListOpenWindowsRequest(), cancellationToken: ct);
            if (parse.GetValue(json)) ProtoJson.Write(session.Out, response);
            else if (response.Windows.Count == 0) await context.Environment.Error.WriteLineAsync("No open windows.");
            else ScheduleText.WriteWindows(session.Out, response.Windows, session.Time);
            return ExitCodes.Ok;
        }, ct));
        return windows;
    }

    private static Command BuildList(CliContext context)
    {
        var json = JsonOption();
        var list = new Command("list", "List schedules: cron, zone, duration, next fire (UTC and the schedule's zone), state, steps that cannot run now") { json };
        list.Aliases.Add("ls");
        list.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var response = await Client(session).ListSchedulesAsync(new ListSchedulesRequest(), cancellationToken: ct);
            if (parse.GetValue(json))
            {
                ProtoJson.Write(session.Out, response);
                return ExitCodes.Ok;
            }
            if (response.Schedules.Count == 0)
            {
                await context.Environment.Error.WriteLineAsync("No schedules.");
                return ExitCodes.Ok;
            }
            ScheduleText.WriteList(session.Out, response.Schedules.OrderBy(s => s.Id, StringComparer.Ordinal));
            return ExitCodes.Ok;
        }, ct));
        return list;
    }

    private static Command BuildShow(CliContext context)
    {
        var name = NameArgument();
        var json = JsonOption();
        var show = new Command("show", "Show a schedule's definition, next fire and each step's availability") { name, json };
        show.Aliases.Add("get");
        show.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = Client(session);
            var id = await ResolveAsync(client, parse.GetRequiredValue(name), ct);
            var schedule = await client.GetScheduleAsync(new ScheduleRequest { Id = id }, cancellationToken: ct);
            if (parse.GetValue(json)) ProtoJson.Write(session.Out, schedule);
            else ScheduleText.WriteDetail(session.Out, schedule);
            return ExitCodes.Ok;
        }, ct));
        return show;
    }

    private static Command BuildCreate(CliContext context)
    {
        var file = FileOption();
        var json = JsonOption();
        var create = new Command("create", "Create a schedule from a YAML file (the shape of deploy/schedules/*.yaml)") { file, json };
        create.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            if (await ReadAsync(context, parse.GetRequiredValue(file), ct) is not { } definition) return ExitCodes.Failure;
            var schedule = await Located(definition, () => Client(session).CreateScheduleAsync(definition.Schedule, cancellationToken: ct).ResponseAsync);
            if (parse.GetValue(json)) ProtoJson.Write(session.Out, schedule);
            else ScheduleText.WriteSaved(session.Out, "Created", schedule);
            return ExitCodes.Ok;
        }, ct));
        return create;
    }

    private static Command BuildUpdate(CliContext context)
    {
        var name = NameArgument();
        var file = FileOption();
        var json = JsonOption();
        var update = new Command("update", "Replace a schedule's definition with a YAML file's (the id stays; an open window keeps the definition it started with)")
        {
            name, file, json,
        };
        update.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            if (await ReadAsync(context, parse.GetRequiredValue(file), ct) is not { } definition) return ExitCodes.Failure;
            var client = Client(session);
            var id = await ResolveAsync(client, parse.GetRequiredValue(name), ct);
            var request = new UpdateScheduleRequest { Id = id, Schedule = definition.Schedule };
            var schedule = await Located(definition, () => client.UpdateScheduleAsync(request, cancellationToken: ct).ResponseAsync);
            if (parse.GetValue(json)) ProtoJson.Write(session.Out, schedule);
            else ScheduleText.WriteSaved(session.Out, "Updated", schedule);
            return ExitCodes.Ok;
        }, ct));
        return update;
    }

    private static Command BuildDelete(CliContext context)
    {
        var name = NameArgument();
        var yes = new Option<bool>("--yes", "-y") { Description = "Confirm: the schedule stops firing and its definition is gone (its history and runs stay)" };
        var delete = new Command("delete", "Delete a schedule (needs --yes)") { name, yes };
        delete.Aliases.Add("rm");
        delete.SetAction(async (parse, ct) =>
        {
            var requested = parse.GetRequiredValue(name).Trim();
            if (!parse.GetValue(yes))
            {
                // Refused before anything is sent: deleting is not undoable.
                await context.Environment.Error.WriteLineAsync($"fleetctl: deleting schedule '{requested}' cannot be undone: add --yes to confirm");
                return ExitCodes.Usage;
            }
            return await context.CallCoordinatorAsync(parse, async session =>
            {
                var client = Client(session);
                var id = await ResolveAsync(client, requested, ct);
                var response = await client.DeleteScheduleAsync(new ScheduleRequest { Id = id }, cancellationToken: ct);
                await session.Out.WriteLineAsync($"Deleted schedule {(response.Id.Length > 0 ? response.Id : id)}.");
                return ExitCodes.Ok;
            }, ct);
        });
        return delete;
    }

    private static Command BuildPause(CliContext context, bool pause)
    {
        var name = NameArgument();
        var json = JsonOption();
        var command = pause
            ? new Command("pause", "Pause a schedule: it fires nothing until resumed") { name, json }
            : new Command("resume", "Resume a paused schedule (what passed while paused is not fired)") { name, json };
        command.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = Client(session);
            var request = new ScheduleRequest { Id = await ResolveAsync(client, parse.GetRequiredValue(name), ct) };
            var schedule = pause ? await client.PauseScheduleAsync(request, cancellationToken: ct) : await client.ResumeScheduleAsync(request, cancellationToken: ct);
            if (parse.GetValue(json))
            {
                ProtoJson.Write(session.Out, schedule);
                return ExitCodes.Ok;
            }
            var next = schedule.NextFire is null ? "" : $"; next window {ScheduleText.Utc(schedule.NextFire)} ({ScheduleText.Local(schedule.NextFire, ScheduleText.Zone(schedule))} {ScheduleText.Zone(schedule)})";
            await session.Out.WriteLineAsync($"Schedule {schedule.Id} is {ScheduleText.State(schedule)}{next}.");
            return ExitCodes.Ok;
        }, ct));
        return command;
    }

    private static Command BuildPreview(CliContext context)
    {
        var name = NameArgument();
        var count = Bounded("--count", DefaultPreview, MaxPreview, "windows");
        var json = JsonOption();
        var preview = new Command("preview", "The next windows in UTC and in the schedule's zone, with other schedules' windows they overlap") { name, count, json };
        preview.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = Client(session);
            var id = await ResolveAsync(client, parse.GetRequiredValue(name), ct);
            var response = await client.PreviewScheduleAsync(new PreviewScheduleRequest { Id = id, Count = parse.GetValue(count) }, cancellationToken: ct);
            if (parse.GetValue(json)) ProtoJson.Write(session.Out, response);
            else if (response.Fires.Count == 0) await context.Environment.Error.WriteLineAsync($"Schedule {response.ScheduleId} has no future windows.");
            else ScheduleText.WritePreview(session.Out, response);
            return ExitCodes.Ok;
        }, ct));
        return preview;
    }

    private static Command BuildRunNow(CliContext context)
    {
        var name = NameArgument();
        var json = JsonOption();
        var runNow = new Command("run-now", "Open a window now, whatever the cron says (audited); prints the occurrence and its runs") { name, json };
        runNow.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = Client(session);
            var id = await ResolveAsync(client, parse.GetRequiredValue(name), ct);
            var occurrence = await client.RunScheduleNowAsync(new ScheduleRequest { Id = id }, cancellationToken: ct);
            if (parse.GetValue(json)) ProtoJson.Write(session.Out, occurrence);
            else ScheduleText.WriteOccurrence(session.Out, occurrence);
            return ExitCodes.Ok;
        }, ct));
        return runNow;
    }

    private static Command BuildHistory(CliContext context)
    {
        var name = NameArgument();
        var limit = Bounded("--limit", DefaultHistory, MaxHistory, "occurrences");
        var json = JsonOption();
        var history = new Command("history", "A schedule's occurrences, newest first: state, steps and their runs") { name, limit, json };
        history.SetAction((parse, ct) => context.CallCoordinatorAsync(parse, async session =>
        {
            var client = Client(session);
            var id = await ResolveAsync(client, parse.GetRequiredValue(name), ct);
            var response = await client.ListOccurrencesAsync(new ListOccurrencesRequest { Id = id, Limit = parse.GetValue(limit) }, cancellationToken: ct);
            if (parse.GetValue(json)) ProtoJson.Write(session.Out, response);
            else if (response.Occurrences.Count == 0) await context.Environment.Error.WriteLineAsync($"Schedule {id} has not fired yet.");
            else ScheduleText.WriteHistory(session.Out, response.Occurrences);
            return ExitCodes.Ok;
        }, ct));
        return history;
    }

    private static SchedulesClient Client(CoordinatorSession session) => new(session.CallInvoker);

    /// <summary>
    /// The id of the schedule named by <paramref name="nameOrId"/>: its id, else its name (case-insensitive). A name two
    /// schedules share is refused with their ids; an unknown id-shaped one is passed on for the coordinator to answer,
    /// any other is NotFound.
    /// </summary>
    internal static async Task<string> ResolveAsync(SchedulesClient client, string nameOrId, CancellationToken ct)
    {
        var wanted = nameOrId.Trim();
        var all = (await client.ListSchedulesAsync(new ListSchedulesRequest(), cancellationToken: ct)).Schedules;
        if (all.Any(s => s.Id == wanted)) return wanted;
        var named = all.Where(s => string.Equals(s.Name.Trim(), wanted, StringComparison.OrdinalIgnoreCase)).ToList();
        return named.Count switch
        {
            1 => named[0].Id,
            // Id-shaped: the coordinator answers (a deleted schedule's history is still there).
            0 when IdShape().IsMatch(wanted) => wanted,
            0 => throw new RpcException(new Status(StatusCode.NotFound, $"no schedule has the id or name '{wanted}' (fleetctl schedules list shows them)")),
            _ => throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"{named.Count} schedules are named '{wanted}'; use the id ({string.Join(", ", named.Select(s => s.Id))})")),
        };
    }

    /// <summary>The file's schedule, or null after writing the error (file, line, field) to stderr.</summary>
    private static async Task<ScheduleFile?> ReadAsync(CliContext context, string path, CancellationToken ct)
    {
        try
        {
            return ScheduleFile.Load(path, await File.ReadAllTextAsync(path, ct));
        }
        catch (ScheduleFileException ex)
        {
            await context.Environment.Error.WriteLineAsync($"fleetctl: {ex.Message}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            await context.Environment.Error.WriteLineAsync($"fleetctl: cannot read {path}: {ex.Message}");
        }
        return null;
    }

    /// <summary>Calls the coordinator with the file's schedule; a refusal naming a field points at the field's line.</summary>
    private static async Task<Schedule> Located(ScheduleFile file, Func<Task<Schedule>> call)
    {
        try
        {
            return await call();
        }
        catch (RpcException ex) when (ex.StatusCode is StatusCode.InvalidArgument or StatusCode.AlreadyExists)
        {
            throw file.Locate(ex);
        }
    }

    private static Option<string> FileOption()
    {
        var file = new Option<string>("--file", "-f") { Description = "The schedule in YAML (id, name, cron, timeZone, duration, hosts, steps...)", HelpName = "schedule.yaml", Required = true };
        file.Validators.Add(result =>
        {
            if (result.Tokens.Count == 0) return;
            var path = result.Tokens[^1].Value;
            if (path.Trim().Length == 0) result.AddError("invalid --file value '': expected the path of a YAML file");
            else if (!File.Exists(path)) result.AddError($"invalid --file value '{path}': no such file");
        });
        return file;
    }

    private static Option<int> Bounded(string name, int defaultValue, int max, string noun) => new(name)
    {
        Description = $"How many {noun} (1-{max}) [default: {defaultValue}]",
        HelpName = "n",
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            var raw = result.Tokens[^1].Value;
            if (int.TryParse(raw.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 && n <= max) return n;
            result.AddError($"invalid {name} value '{raw}': expected a whole number from 1 to {max}");
            return defaultValue;
        },
    };

    [GeneratedRegex(@"\A[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\z")]
    private static partial Regex IdShape();

    private static Option<bool> JsonOption() => new("--json") { Description = "Print JSON (the REST API's field names) instead of text" };

    private static Argument<string> NameArgument()
    {
        var argument = new Argument<string>("name") { Description = "The schedule's id or name", HelpName = "name|id" };
        argument.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && string.IsNullOrWhiteSpace(result.Tokens[0].Value)) result.AddError("the schedule's name or id must not be empty");
        });
        return argument;
    }
}
