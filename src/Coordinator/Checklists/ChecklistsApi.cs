using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;
using V1 = Fleet.Protocol.V1;

namespace Fleet.Coordinator.Checklists;

/// <summary>Ops API for checklists: gRPC, and REST under /api/v1/checklists through JSON transcoding.</summary>
sealed partial class ChecklistsApi(
    IDbContextFactory<FleetDbContext> dbFactory,
    ChecklistStatus status,
    AuditLog audit,
    TimeProvider time,
    ILogger<ChecklistsApi> logger) : V1.Checklists.ChecklistsBase
{
    public override async Task<GetChecklistsResponse> GetChecklists(GetChecklistsRequest request, ServerCallContext context)
    {
        var now = time.GetUtcNow();
        IEnumerable<CalendarPeriod> periods = request.Period.Trim().Length == 0
            ? CalendarPeriod.Kinds.Select(k => CalendarPeriod.Containing(k, now))
            : [ParsePeriod(request.Period)];
        var response = new GetChecklistsResponse();
        foreach (var period in periods)
        {
            var message = new V1.ChecklistPeriod
            {
                Period = period.Text,
                Kind = CalendarPeriod.KindName(period.Kind),
                Start = Timestamp.FromDateTime(period.Start),
                End = Timestamp.FromDateTime(period.End),
                Over = period.IsOver(now),
            };
            message.Items.AddRange((await status.EvaluateAsync(period, context.CancellationToken)).Select(ToMessage));
            response.Periods.Add(message);
        }
        return response;
    }

    public override async Task<V1.ChecklistItem> SignChecklistItem(SignChecklistItemRequest request, ServerCallContext context)
    {
        var id = request.Item.Trim();
        var item = status.Catalog.Find(id)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"item: '{Clip(request.Item, 80)}' is not a checklist item"));
        if (item.Automatic)
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"item: '{id}' is automatic (done by a successful run of {string.Join(" or ", item.Tasks)}); only manual items are signed off"));
        var now = time.GetUtcNow();
        var periodText = request.Period.Trim();
        var period = periodText.Length == 0 || string.Equals(periodText, "current", StringComparison.OrdinalIgnoreCase)
            ? CalendarPeriod.Containing(item.Kind, now)
            : ParsePeriod(periodText);
        if (period.Kind != item.Kind)
            throw ApiArguments.Invalid($"period: '{period.Text}' is a {CalendarPeriod.KindName(period.Kind)} period; item '{id}' is {CalendarPeriod.KindName(item.Kind)}");
        if (period.Start > now.UtcDateTime)
            throw ApiArguments.Invalid($"period: '{period.Text}' has not started yet");
        var comment = request.Comment.Trim();
        if (comment.Length == 0) throw ApiArguments.Invalid("comment: required (what was done, e.g. a ticket or report reference)");
        if (comment.Length > ChecklistSignOffRecord.MaxComment)
            throw ApiArguments.Invalid($"comment: {comment.Length} characters; at most {ChecklistSignOffRecord.MaxComment}");

        var actor = context.Actor();
        await using var db = dbFactory.CreateDbContext();
        var existing = await FindAsync(db, id, period.Text, context.CancellationToken);
        if (existing is not null) throw AlreadySigned(existing);
        var record = new ChecklistSignOffRecord
        {
            ItemId = id, Period = period.Text, SignedBy = actor.Name, SignedAt = AuditChain.TruncateToMicroseconds(now.UtcDateTime), Comment = comment,
        };
        db.Set<ChecklistSignOffRecord>().Add(record);
        // One SaveChanges: the sign-off and its audit row commit together or not at all.
        audit.Add(db, actor, "checklist.signed", target: $"checklist:{id}/{period.Text}",
            parameters: new Dictionary<string, string?> { ["item"] = id, ["period"] = period.Text, ["comment"] = comment });
        try
        {
            await db.SaveChangesAsync(context.CancellationToken);
        }
        catch (DbUpdateException)
        {
            // Another operator signed between our check and our insert: the unique (item, period) row decides.
            await using var again = dbFactory.CreateDbContext();
            if (await FindAsync(again, id, period.Text, context.CancellationToken) is { } winner) throw AlreadySigned(winner);
            throw;
        }
        LogSigned(id, period.Text, actor.ToString());
        var state = (await status.EvaluateAsync(period, context.CancellationToken)).Single(s => s.Item.Id == id);
        return ToMessage(state);
    }

    static Task<ChecklistSignOffRecord?> FindAsync(FleetDbContext db, string id, string period, CancellationToken cancellationToken) =>
        db.Set<ChecklistSignOffRecord>().AsNoTracking().SingleOrDefaultAsync(s => s.ItemId == id && s.Period == period, cancellationToken);

    static RpcException AlreadySigned(ChecklistSignOffRecord existing) =>
        new(new Status(StatusCode.AlreadyExists,
            $"item '{existing.ItemId}' is already signed off for {existing.Period} by {existing.SignedBy} at {existing.SignedAt:yyyy-MM-ddTHH:mm:ssZ}"));

    static CalendarPeriod ParsePeriod(string text) =>
        CalendarPeriod.TryParse(text, out var period)
            ? period.Value
            : throw ApiArguments.Invalid($"period: '{Clip(text, 40)}' is not a period ({CalendarPeriod.Formats}, UTC)");

    static string Clip(string text, int max) => text.Length <= max ? text : text[..max] + "…";

    internal static V1.ChecklistItem ToMessage(ChecklistItemState state)
    {
        var message = new V1.ChecklistItem
        {
            Id = state.Item.Id,
            Title = state.Item.Title,
            Kind = CalendarPeriod.KindName(state.Item.Kind),
            Automatic = state.Item.Automatic,
            Period = state.Period.Text,
            Status = state.State switch
            {
                ChecklistState.Done => ChecklistItemStatus.Done,
                ChecklistState.Missed => ChecklistItemStatus.Missed,
                _ => ChecklistItemStatus.Pending,
            },
            RunCount = state.RunCount,
            Description = state.Item.Description,
        };
        message.Tasks.AddRange(state.Item.Tasks);
        message.Runs.AddRange(state.Runs.Select(r => new ChecklistRunEvidence
        {
            RunId = r.RunId, Task = r.Task, FinishedAt = Timestamp.FromDateTime(r.FinishedAt), Link = r.Link,
        }));
        if (state.SignOff is { } s)
            message.SignOff = new ChecklistSignOff { SignedBy = s.SignedBy, SignedAt = Timestamp.FromDateTime(s.SignedAt), Comment = s.Comment };
        return message;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Checklist item {Item} signed off for {Period} by {Actor}")]
    partial void LogSigned(string item, string period, string actor);
}
