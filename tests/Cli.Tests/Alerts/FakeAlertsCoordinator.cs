using System.Collections.Concurrent;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Cli.Tests.Alerts;

/// <summary>The Alerts, Rules and Silences services from memory; every request is kept for the test to read.</summary>
public sealed class FakeAlertsCoordinator : FakeGrpcServer
{
    private FakeAlertsCoordinator()
    {
        Alerts = Serve(new FakeAlertsService());
        Rules = Serve(new FakeRulesService());
        Silences = Serve(new FakeSilencesService());
    }

    public FakeAlertsService Alerts { get; }
    public FakeRulesService Rules { get; }
    public FakeSilencesService Silences { get; }

    public static async Task<FakeAlertsCoordinator> StartAsync()
    {
        var coordinator = new FakeAlertsCoordinator();
        await coordinator.ListenAsync();
        return coordinator;
    }
}

public sealed class FakeAlertsService : Fleet.Protocol.V1.Alerts.AlertsBase
{
    public List<Alert> Current { get; } = [];
    public ConcurrentQueue<IMessageRecord> Requests { get; } = new();

    public override Task<ListAlertsResponse> ListAlerts(ListAlertsRequest request, ServerCallContext context)
    {
        Requests.Enqueue(new IMessageRecord(request));
        var response = new ListAlertsResponse();
        response.Alerts.AddRange(Current.Where(a => request.State is "" or "all" ? a.State is "pending" or "firing" || request.State == "all" : a.State == request.State));
        return Task.FromResult(response);
    }

    public override Task<Alert> AcknowledgeAlert(AcknowledgeAlertRequest request, ServerCallContext context)
    {
        Requests.Enqueue(new IMessageRecord(request));
        var alert = Current.FirstOrDefault(a => a.Id == request.Id) ?? throw new RpcException(new Status(StatusCode.NotFound, $"id: alert {request.Id} does not exist"));
        if (alert.AcknowledgedAt is not null) throw new RpcException(new Status(StatusCode.FailedPrecondition, $"id: alert {request.Id} was already acknowledged"));
        alert.AcknowledgedAt = Timestamp.FromDateTimeOffset(TestFleet.Now);
        alert.AcknowledgedBy = context.RequestHeaders.GetValue("x-fleet-user") ?? "";
        alert.AckComment = request.Comment;
        return Task.FromResult(alert);
    }
}

public sealed class FakeRulesService : Fleet.Protocol.V1.Rules.RulesBase
{
    public List<Rule> Stored { get; } = [];
    public ConcurrentQueue<IMessageRecord> Requests { get; } = new();

    public override Task<ListRulesResponse> ListRules(ListRulesRequest request, ServerCallContext context)
    {
        var response = new ListRulesResponse();
        response.Rules.AddRange(Stored);
        return Task.FromResult(response);
    }

    public override Task<Rule> CreateRule(CreateRuleRequest request, ServerCallContext context)
    {
        Requests.Enqueue(new IMessageRecord(request));
        if (request.Yaml.Contains("severity: urgent", StringComparison.Ordinal))
            throw new RpcException(new Status(StatusCode.InvalidArgument, "severity: 'urgent' is not one of critical, warning, info"));
        var rule = new Rule { Name = "from-yaml", Kind = "threshold", Severity = "warning" };
        Stored.Add(rule);
        return Task.FromResult(rule);
    }

    public override Task<DeleteRuleResponse> DeleteRule(DeleteRuleRequest request, ServerCallContext context)
    {
        Requests.Enqueue(new IMessageRecord(request));
        return Task.FromResult(new DeleteRuleResponse { Deleted = true, AlertsResolved = 2 });
    }
}

public sealed class FakeSilencesService : Fleet.Protocol.V1.Silences.SilencesBase
{
    public ConcurrentQueue<IMessageRecord> Requests { get; } = new();

    public override Task<Silence> CreateSilence(CreateSilenceRequest request, ServerCallContext context)
    {
        Requests.Enqueue(new IMessageRecord(request));
        var silence = new Silence
        {
            Id = "s-1", StartsAt = Timestamp.FromDateTimeOffset(TestFleet.Now), EndsAt = Timestamp.FromDateTimeOffset(TestFleet.Now.AddHours(2)),
            Comment = request.Comment, CreatedBy = "test-operator", State = "active",
        };
        silence.Matchers.AddRange(request.Matchers);
        return Task.FromResult(silence);
    }

    public override Task<Silence> ExpireSilence(ExpireSilenceRequest request, ServerCallContext context)
    {
        Requests.Enqueue(new IMessageRecord(request));
        return Task.FromResult(new Silence { Id = request.Id, State = "expired", EndsAt = Timestamp.FromDateTimeOffset(TestFleet.Now) });
    }
}

/// <summary>A received request.</summary>
public sealed record IMessageRecord(Google.Protobuf.IMessage Message);
