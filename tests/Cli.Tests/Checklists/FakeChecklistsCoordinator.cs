using System.Collections.Concurrent;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Cli.Tests.Checklists;

/// <summary>The Checklists service from memory: a fixed answer to GetChecklists, sign-offs recorded.</summary>
public sealed class FakeChecklistsCoordinator : FakeGrpcServer
{
    private FakeChecklistsCoordinator() => Checklists = Serve(new FakeChecklistsService());

    public FakeChecklistsService Checklists { get; }

    public static async Task<FakeChecklistsCoordinator> StartAsync()
    {
        var coordinator = new FakeChecklistsCoordinator();
        await coordinator.ListenAsync();
        return coordinator;
    }
}

/// <summary>Answers <see cref="Response"/> to every GetChecklists; SignChecklistItem signs once per item, then AlreadyExists.</summary>
public sealed class FakeChecklistsService : Fleet.Protocol.V1.Checklists.ChecklistsBase
{
    public GetChecklistsResponse Response { get; set; } = new();

    public ConcurrentQueue<GetChecklistsRequest> Gets { get; } = new();

    public ConcurrentQueue<(SignChecklistItemRequest Request, string? User)> Signs { get; } = new();

    public override Task<GetChecklistsResponse> GetChecklists(GetChecklistsRequest request, ServerCallContext context)
    {
        Gets.Enqueue(request.Clone());
        if (request.Period == "2026-W54") throw new RpcException(new Status(StatusCode.InvalidArgument, "period: '2026-W54' is not a period"));
        return Task.FromResult(Response.Clone());
    }

    public override Task<ChecklistItem> SignChecklistItem(SignChecklistItemRequest request, ServerCallContext context)
    {
        var user = context.RequestHeaders.GetValue("x-fleet-user");
        if (request.Item == "nope") throw new RpcException(new Status(StatusCode.NotFound, "item: 'nope' is not a checklist item"));
        if (Signs.Any(s => s.Request.Item == request.Item))
            throw new RpcException(new Status(StatusCode.AlreadyExists, $"item '{request.Item}' is already signed off for 2025-Q1 by {Signs.First().User}"));
        Signs.Enqueue((request.Clone(), user));
        return Task.FromResult(new ChecklistItem
        {
            Id = request.Item, Title = "Compliance audit", Kind = "quarterly", Period = request.Period.Length > 0 ? request.Period : "2025-Q1",
            Status = ChecklistItemStatus.Done,
            SignOff = new ChecklistSignOff { SignedBy = user ?? "", SignedAt = Timestamp.FromDateTimeOffset(TestFleet.Now), Comment = request.Comment },
        });
    }
}
