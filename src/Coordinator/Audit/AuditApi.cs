using System.Globalization;
using System.Text;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Audit;

/// <summary>Audit queries, export and verification (gRPC, and REST through JSON transcoding).</summary>
sealed class AuditApi(IDbContextFactory<FleetDbContext> dbFactory, AuditVerifier verifier) : Protocol.V1.Audit.AuditBase
{
    const int DefaultPageSize = 100;
    const int MaxPageSize = 1000;

    public override async Task<ListAuditEventsResponse> ListAuditEvents(ListAuditEventsRequest request, ServerCallContext context)
    {
        if (request.PageSize is < 0 or > MaxPageSize)
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"page_size: {request.PageSize} is out of range (1-{MaxPageSize})"));
        var size = request.PageSize == 0 ? DefaultPageSize : request.PageSize;
        var after = DecodeToken(request.PageToken);
        await using var db = dbFactory.CreateDbContext();
        var query = AuditQuery.Filter(db.Set<AuditRecord>().AsNoTracking(), request);
        if (after is { } id)
            query = request.NewestFirst ? query.Where(e => e.Id < id) : query.Where(e => e.Id > id);
        query = request.NewestFirst ? query.OrderByDescending(e => e.Id) : query.OrderBy(e => e.Id);
        var rows = await query.Take(size + 1).ToListAsync(context.CancellationToken);
        var response = new ListAuditEventsResponse();
        response.Events.AddRange(rows.Take(size).Select(ToMessage));
        if (rows.Count > size)
            response.NextPageToken = EncodeToken(rows[size - 1].Id);
        return response;
    }

    public override async Task ExportAuditEvents(ListAuditEventsRequest request, IServerStreamWriter<AuditEvent> responseStream, ServerCallContext context)
    {
        await using var db = dbFactory.CreateDbContext();
        await foreach (var row in AuditQuery.Filter(db.Set<AuditRecord>().AsNoTracking(), request).OrderBy(e => e.Id).AsAsyncEnumerable().WithCancellation(context.CancellationToken))
            await responseStream.WriteAsync(ToMessage(row), context.CancellationToken);
    }

    public override Task<VerifyAuditResponse> VerifyAudit(VerifyAuditRequest request, ServerCallContext context) =>
        verifier.VerifyAsync(context.CancellationToken);

    internal static AuditEvent ToMessage(AuditRecord r) => new()
    {
        Id = r.Id,
        Seq = r.Seq ?? 0,
        Time = Timestamp.FromDateTime(r.Time),
        ActorKind = r.ActorKind,
        Actor = r.Actor,
        RemoteAddress = r.RemoteAddress,
        Action = r.Action,
        Target = r.Target,
        Host = r.Host,
        ParametersJson = r.ParametersJson,
        Outcome = r.Outcome,
        Hash = AuditChain.Hex(r.Hash),
    };

    static string EncodeToken(long id) => Convert.ToBase64String(Encoding.UTF8.GetBytes("id:" + id.ToString(CultureInfo.InvariantCulture)));

    static long? DecodeToken(string token)
    {
        if (string.IsNullOrEmpty(token)) return null;
        try
        {
            var text = Encoding.UTF8.GetString(Convert.FromBase64String(token));
            if (text.StartsWith("id:", StringComparison.Ordinal) && long.TryParse(text.AsSpan(3), NumberStyles.None, CultureInfo.InvariantCulture, out var id))
                return id;
        }
        catch (FormatException) { }
        throw new RpcException(new Status(StatusCode.InvalidArgument, $"page_token: '{token}' is not a token returned by this API"));
    }
}

/// <summary>The filters shared by list, export and CSV.</summary>
static class AuditQuery
{
    public static IQueryable<AuditRecord> Filter(IQueryable<AuditRecord> query, ListAuditEventsRequest request)
    {
        if (request.From is not null && request.To is not null && request.From.ToDateTime() > request.To.ToDateTime())
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"from: {request.From} is after to: {request.To}"));
        if (request.Actor.Length > 0) query = query.Where(e => e.Actor == request.Actor);
        if (request.Action.EndsWith('*'))
        {
            var prefix = request.Action[..^1];
            query = query.Where(e => e.Action.StartsWith(prefix));
        }
        else if (request.Action.Length > 0) query = query.Where(e => e.Action == request.Action);
        if (request.Host.Length > 0) query = query.Where(e => e.Host == request.Host);
        if (request.From is not null) { var from = Hosting.ApiArguments.Time(request.From, "from"); query = query.Where(e => e.Time >= from); }
        if (request.To is not null) { var to = Hosting.ApiArguments.Time(request.To, "to"); query = query.Where(e => e.Time < to); }
        if (request.Q.Length > 0)
        {
            var pattern = "%" + request.Q.ToLowerInvariant().Replace("\\", "\\\\", StringComparison.Ordinal).Replace("%", "\\%", StringComparison.Ordinal).Replace("_", "\\_", StringComparison.Ordinal) + "%";
            query = query.Where(e => EF.Functions.Like(e.Target.ToLower(), pattern, "\\")
                                  || EF.Functions.Like(e.ParametersJson.ToLower(), pattern, "\\")
                                  || EF.Functions.Like(e.Outcome.ToLower(), pattern, "\\")
                                  || EF.Functions.Like(e.Action.ToLower(), pattern, "\\"));
        }
        return query;
    }
}
