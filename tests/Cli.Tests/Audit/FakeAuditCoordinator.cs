using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using Fleet.Protocol.V1;
using Fleet.Testing;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Fleet.Cli.Tests.Audit;

/// <summary>A real loopback gRPC server (Kestrel, plaintext HTTP/2) implementing the Audit service over an in-memory list.</summary>
public sealed class FakeAuditCoordinator : IAsyncDisposable
{
    private readonly WebApplication _app;

    private FakeAuditCoordinator(WebApplication app, Uri address, FakeAuditService service)
    {
        _app = app;
        Address = address;
        Service = service;
    }

    public Uri Address { get; }

    public string Url => Address.GetLeftPart(UriPartial.Authority);

    public FakeAuditService Service { get; }

    public static async Task<FakeAuditCoordinator> StartAsync(IEnumerable<AuditEvent> events)
    {
        for (var attempt = 1; ; attempt++)
        {
            var port = FreePort.Next();
            var service = new FakeAuditService(events);
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port, listen => listen.Protocols = HttpProtocols.Http2));
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(service);
            var app = builder.Build();
            app.MapGrpcService<FakeAuditService>();
            try
            {
                await app.StartAsync();
                return new FakeAuditCoordinator(app, new Uri($"http://127.0.0.1:{port}"), service);
            }
            catch (IOException) when (attempt < 5)
            {
                await app.DisposeAsync();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
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
