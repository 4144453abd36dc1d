using System.Collections.Concurrent;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Cli.Tests.Schedules;

/// <summary>The Schedules service from memory.</summary>
public sealed class FakeSchedulesCoordinator : FakeGrpcServer
{
    private FakeSchedulesCoordinator() => Service = Serve(new FakeSchedulesService());

    public FakeSchedulesService Service { get; }

    public static async Task<FakeSchedulesCoordinator> StartAsync()
    {
        var coordinator = new FakeSchedulesCoordinator();
        await coordinator.ListenAsync();
        return coordinator;
    }
}

public sealed record ReceivedSchedulesCall(string Method, string? User, IMessage Request);

/// <summary>
/// Schedules by id; a few of the coordinator's refusals, worded as it words them (the coordinator's own tests cover
/// its validation): an hour of 25 in the cron, a task name with characters outside [A-Za-z0-9._-], a duplicate id.
/// </summary>
public sealed class FakeSchedulesService : Fleet.Protocol.V1.Schedules.SchedulesBase
{
    public ConcurrentQueue<ReceivedSchedulesCall> Calls { get; } = new();

    public ConcurrentDictionary<string, Schedule> Stored { get; } = new();

    public ConcurrentDictionary<string, List<Occurrence>> Occurrences { get; } = new();

    public PreviewScheduleResponse Preview { get; set; } = new();

    public List<OpenWindow> Windows { get; } = [];

    public IEnumerable<T> Received<T>() where T : IMessage => Calls.Select(c => c.Request).OfType<T>();

    public IEnumerable<string> Methods => Calls.Select(c => c.Method);

    public override Task<Schedule> CreateSchedule(Schedule request, ServerCallContext context)
    {
        Record(nameof(CreateSchedule), context, request);
        var schedule = Validate(request, request.Id.Length > 0 ? request.Id : request.Name.ToLowerInvariant().Replace(' ', '-'));
        if (!Stored.TryAdd(schedule.Id, schedule)) throw new RpcException(new Status(StatusCode.AlreadyExists, $"id: schedule '{schedule.Id}' already exists"));
        return Task.FromResult(schedule);
    }

    public override Task<Schedule> UpdateSchedule(UpdateScheduleRequest request, ServerCallContext context)
    {
        Record(nameof(UpdateSchedule), context, request);
        Find(request.Id);
        if (request.Schedule.Id.Length > 0 && request.Schedule.Id != request.Id)
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"id: '{request.Schedule.Id}' differs from the schedule's id '{request.Id}' (ids cannot change)"));
        var schedule = Validate(request.Schedule, request.Id);
        Stored[request.Id] = schedule;
        return Task.FromResult(schedule);
    }

    public override Task<ListSchedulesResponse> ListSchedules(ListSchedulesRequest request, ServerCallContext context)
    {
        Record(nameof(ListSchedules), context, request);
        var response = new ListSchedulesResponse();
        // Deliberately unsorted: sorting is the CLI's job.
        response.Schedules.AddRange(Stored.Values.OrderByDescending(s => s.Id, StringComparer.Ordinal).Select(s => s.Clone()));
        return Task.FromResult(response);
    }

    public override Task<Schedule> GetSchedule(ScheduleRequest request, ServerCallContext context)
    {
        Record(nameof(GetSchedule), context, request);
        return Task.FromResult(Find(request.Id));
    }

    public override Task<DeleteScheduleResponse> DeleteSchedule(ScheduleRequest request, ServerCallContext context)
    {
        Record(nameof(DeleteSchedule), context, request);
        return Stored.TryRemove(request.Id, out _)
            ? Task.FromResult(new DeleteScheduleResponse { Id = request.Id })
            : throw NotFound(request.Id);
    }

    public override Task<Schedule> PauseSchedule(ScheduleRequest request, ServerCallContext context)
    {
        Record(nameof(PauseSchedule), context, request);
        var schedule = Find(request.Id);
        schedule.Paused = true;
        schedule.NextFire = null;
        return Task.FromResult(schedule);
    }

    public override Task<Schedule> ResumeSchedule(ScheduleRequest request, ServerCallContext context)
    {
        Record(nameof(ResumeSchedule), context, request);
        var schedule = Find(request.Id);
        schedule.Paused = false;
        schedule.NextFire = Timestamp.FromDateTimeOffset(TestFleet.Now.AddHours(3));
        return Task.FromResult(schedule);
    }

    public override Task<PreviewScheduleResponse> PreviewSchedule(PreviewScheduleRequest request, ServerCallContext context)
    {
        Record(nameof(PreviewSchedule), context, request);
        Find(request.Id);
        return Task.FromResult(Preview);
    }

    public override Task<Occurrence> RunScheduleNow(ScheduleRequest request, ServerCallContext context)
    {
        Record(nameof(RunScheduleNow), context, request);
        var schedule = Find(request.Id);
        var occurrence = new Occurrence
        {
            Id = "o-manual1", ScheduleId = schedule.Id, Kind = "manual", State = "open", CreatedBy = context.RequestHeaders.GetValue("x-fleet-user") ?? "",
            Scheduled = Timestamp.FromDateTimeOffset(TestFleet.Now), Ends = Timestamp.FromDateTimeOffset(TestFleet.Now.AddMinutes(15)),
            OpenedAt = Timestamp.FromDateTimeOffset(TestFleet.Now), Hosts = { "a-web1", "a-web2" },
        };
        occurrence.Steps.AddRange(schedule.Steps.Select((s, i) => new OccurrenceStep
        {
            Index = i, Task = s.Task, State = i == 0 ? "running" : "pending", RunId = i == 0 ? "r-step0" : "", RunStatus = i == 0 ? "in_progress" : "",
        }));
        Occurrences.GetOrAdd(schedule.Id, _ => []).Insert(0, occurrence);
        return Task.FromResult(occurrence);
    }

    public override Task<ListOccurrencesResponse> ListOccurrences(ListOccurrencesRequest request, ServerCallContext context)
    {
        Record(nameof(ListOccurrences), context, request);
        Find(request.Id);
        var response = new ListOccurrencesResponse();
        response.Occurrences.AddRange(Occurrences.GetValueOrDefault(request.Id, []).Take(request.Limit));
        return Task.FromResult(response);
    }

    public override Task<ListOpenWindowsResponse> ListOpenWindows(ListOpenWindowsRequest request, ServerCallContext context)
    {
        Record(nameof(ListOpenWindows), context, request);
        var response = new ListOpenWindowsResponse();
        response.Windows.AddRange(Windows);
        return Task.FromResult(response);
    }

    private static Schedule Validate(Schedule request, string id)
    {
        if (request.Cron.Split(' ', StringSplitOptions.RemoveEmptyEntries) is [_, "25", ..])
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"cron: '{request.Cron}' is not a valid cron expression: Hours: Value is out of range"));
        for (var i = 0; i < request.Steps.Count; i++)
        {
            if (!request.Steps[i].Task.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"steps[{i}].task: '{request.Steps[i].Task}' is not a valid task name"));
        }
        if (request.Hosts.Count == 0 && request.Tags.Count == 0)
            throw new RpcException(new Status(StatusCode.InvalidArgument, "hosts: name the targets: hosts (agent ids, hostnames, or \"*\" for every host) and/or tags (key=value)"));
        var schedule = request.Clone();
        schedule.Id = id;
        schedule.TimeZone = schedule.TimeZone.Length == 0 ? "UTC" : schedule.TimeZone;
        schedule.Enabled = !request.HasEnabled || request.Enabled;
        schedule.NextFire = schedule.Enabled && !schedule.Paused ? Timestamp.FromDateTimeOffset(TestFleet.Now.AddHours(1)) : null;
        schedule.Source = "api";
        foreach (var step in schedule.Steps.Where(s => s.Task == "security.scan"))
        {
            step.Disabled = true;
            step.DisabledReason = "task-unavailable";
        }
        return schedule;
    }

    private Schedule Find(string id) => Stored.TryGetValue(id, out var schedule) ? schedule : throw NotFound(id);

    private static RpcException NotFound(string id) => new(new Status(StatusCode.NotFound, $"schedule '{id}' not found"));

    private void Record<T>(string method, ServerCallContext context, T request) where T : IMessage, IDeepCloneable<T> =>
        Calls.Enqueue(new ReceivedSchedulesCall(method, context.RequestHeaders.GetValue("x-fleet-user"), request.Clone()));
}
