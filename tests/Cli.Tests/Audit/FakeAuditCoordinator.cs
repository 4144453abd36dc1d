using System.Collections.Concurrent;
using System.Globalization;
using Fleet.Protocol.V1;
using Grpc.Core;

namespace Fleet.Cli.Tests.Audit;

/// <summary>The Audit service over an in-memory list.</summary>
public sealed class FakeAuditCoordinator : FakeGrpcServer
{
    private FakeAuditCoordinator(IEnumerable<AuditEvent> events) => Service = Serve(new FakeAuditService(events));

    public FakeAuditService Service { get; }

    public static async Task<FakeAuditCoordinator> StartAsync(IEnumerable<AuditEvent> events)
    {
        var coordinator = new FakeAuditCoordinator(events);
        await coordinator.ListenAsync();
        return coordinator;
    }
}

public sealed record ReceivedAuditCall(string Method, string? User, DateTime Deadline, ListAuditEventsRequest? Request);

public sealed class FakeAuditService(IEnumerable<AuditEvent> events) : Fleet.Protocol.V1.Audit.AuditBase
{
    private readonly List<AuditEvent> _events = [.. events.Select(e => e.Clone())];

    public ConcurrentQueue<ReceivedAuditCall> Calls { get; } = new();

    /// <summary>The largest page ListAuditEvents returns, whatever page_size asks for (to force paging).</summary>
    public int MaxPageSize { get; set; } = 1000;

    public VerifyAuditResponse Verification { get; set; } = new() { Ok = true };

    /// <summary>Called by ExportAuditEvents after it has sent this many rows (see <see cref="AfterRows"/>).</summary>
    public int AfterRowsCount { get; set; } = -1;

    /// <summary>Runs mid-export, once; throwing from it fails the stream with that exception.</summary>
    public Action? AfterRows { get; set; }

    public override Task<ListAuditEventsResponse> ListAuditEvents(ListAuditEventsRequest request, ServerCallContext context)
    {
        Record(nameof(ListAuditEvents), context, request);
        var matching = Matching(request).ToList();
        var offset = request.PageToken.Length == 0 ? 0 : int.Parse(request.PageToken, CultureInfo.InvariantCulture);
        var size = Math.Min(request.PageSize <= 0 ? 100 : request.PageSize, MaxPageSize);
        var response = new ListAuditEventsResponse();
        response.Events.AddRange(matching.Skip(offset).Take(size));
        if (offset + size < matching.Count) response.NextPageToken = (offset + size).ToString(CultureInfo.InvariantCulture);
        return Task.FromResult(response);
    }

    public override Task<VerifyAuditResponse> VerifyAudit(VerifyAuditRequest request, ServerCallContext context)
    {
        Record(nameof(VerifyAudit), context);
        return Task.FromResult(Verification);
    }

    public override async Task ExportAuditEvents(ListAuditEventsRequest request, IServerStreamWriter<AuditEvent> responseStream, ServerCallContext context)
    {
        Record(nameof(ExportAuditEvents), context, request);
        var sent = 0;
        foreach (var auditEvent in Matching(request))
        {
            if (sent == AfterRowsCount) AfterRows?.Invoke();
            await responseStream.WriteAsync(auditEvent, context.CancellationToken);
            sent++;
        }
    }

    private IEnumerable<AuditEvent> Matching(ListAuditEventsRequest request)
    {
        var matching = _events.Where(e =>
            (request.Actor.Length == 0 || e.Actor == request.Actor)
            && (request.Action.Length == 0 || (request.Action.EndsWith('*') ? e.Action.StartsWith(request.Action[..^1], StringComparison.Ordinal) : e.Action == request.Action))
            && (request.Host.Length == 0 || e.Host == request.Host)
            && (request.From is null || e.Time.ToDateTimeOffset() >= request.From.ToDateTimeOffset())
            && (request.To is null || e.Time.ToDateTimeOffset() < request.To.ToDateTimeOffset())
            && (request.Q.Length == 0 || e.Target.Contains(request.Q, StringComparison.Ordinal) || e.ParametersJson.Contains(request.Q, StringComparison.Ordinal)
                || e.Outcome.Contains(request.Q, StringComparison.Ordinal)));
        return request.NewestFirst ? matching.OrderByDescending(e => e.Id) : matching.OrderBy(e => e.Id);
    }

    private void Record(string method, ServerCallContext context, ListAuditEventsRequest? request = null) =>
        Calls.Enqueue(new ReceivedAuditCall(method, context.RequestHeaders.GetValue("x-fleet-user"), context.Deadline, request?.Clone()));
}
