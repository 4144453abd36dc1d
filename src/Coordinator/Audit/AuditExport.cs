using System.Globalization;
using System.Text;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Audit;

/// <summary>GET /api/v1/audit:export?format=csv|jsonl with the same filters as GET /api/v1/audit, oldest first.</summary>
public static class AuditExport
{
    public static async Task WriteAsync(HttpContext http, IDbContextFactory<FleetDbContext> dbFactory, CancellationToken cancellationToken)
    {
        var q = http.Request.Query;
        var format = q["format"].ToString();
        if (format is not ("" or "csv" or "jsonl"))
        {
            http.Response.StatusCode = StatusCodes.Status400BadRequest;
            await http.Response.WriteAsync($"format: '{format}' is not supported (csv or jsonl)", cancellationToken);
            return;
        }
        var request = new ListAuditEventsRequest { Actor = q["actor"].ToString(), Action = q["action"].ToString(), Host = q["host"].ToString(), Q = q["q"].ToString() };
        foreach (var (name, set) in new (string, Action<Timestamp>)[] { ("from", t => request.From = t), ("to", t => request.To = t) })
        {
            if (q[name].ToString() is not { Length: > 0 } text) continue;
            if (!DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var value))
            {
                http.Response.StatusCode = StatusCodes.Status400BadRequest;
                await http.Response.WriteAsync($"{name}: '{text}' is not a date-time (ISO 8601)", cancellationToken);
                return;
            }
            set(Timestamp.FromDateTimeOffset(value));
        }
        IQueryable<AuditRecord> query;
        await using var db = dbFactory.CreateDbContext();
        try { query = AuditQuery.Filter(db.Set<AuditRecord>().AsNoTracking(), request).OrderBy(e => e.Id); }
        catch (RpcException ex)
        {
            http.Response.StatusCode = StatusCodes.Status400BadRequest;
            await http.Response.WriteAsync(ex.Status.Detail, cancellationToken);
            return;
        }
        if (format == "jsonl")
        {
            http.Response.ContentType = "application/x-ndjson";
            await foreach (var row in query.AsAsyncEnumerable().WithCancellation(cancellationToken))
                await http.Response.WriteAsync(Google.Protobuf.JsonFormatter.Default.Format(AuditApi.ToMessage(row)) + "\n", cancellationToken);
            return;
        }
        http.Response.ContentType = "text/csv; charset=utf-8";
        await http.Response.WriteAsync(AuditCsv.Header + "\n", cancellationToken);
        await foreach (var row in query.AsAsyncEnumerable().WithCancellation(cancellationToken))
            await http.Response.WriteAsync(AuditCsv.Line(row) + "\n", cancellationToken);
    }
}

/// <summary>RFC 4180 CSV of audit rows.</summary>
public static class AuditCsv
{
    public const string Header = "seq,id,time,actor_kind,actor,remote_address,action,target,host,outcome,parameters_json,hash";

    public static string Line(AuditRecord r) => string.Join(',',
        (r.Seq ?? 0).ToString(CultureInfo.InvariantCulture), r.Id.ToString(CultureInfo.InvariantCulture),
        r.Time.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture),
        Field(r.ActorKind), Field(r.Actor), Field(r.RemoteAddress), Field(r.Action), Field(r.Target), Field(r.Host),
        Field(r.Outcome), Field(r.ParametersJson), AuditChain.Hex(r.Hash));

    static string Field(string value) =>
        value.AsSpan().IndexOfAny(",\"\r\n") < 0 ? value : "\"" + value.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}
