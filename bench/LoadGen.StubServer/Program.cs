using System.Net;
using Fleet.Bench.LoadGen.StubServer;
using Microsoft.AspNetCore.Server.Kestrel.Core;

// Stand-in coordinator for the load generator: `--port 5081 --reject-every 0 --report-every 5`.
// Log-shipping sink (bench/scenarios/logship.sh): `--expect-lines 2000000` counts log entries by their seq=N before
// acking, `--tcp-lines 5514` also counts newline-delimited lines from rsyslog's omfwd.
// Listens on 127.0.0.1 only, HTTP/2 without TLS (h2c), like the coordinator's agent port.
var builder = WebApplication.CreateBuilder(args);
var options = new StubOptions(
    Port: builder.Configuration.GetValue("port", 5081),
    RejectEvery: builder.Configuration.GetValue("reject-every", 0),
    ReportEvery: TimeSpan.FromSeconds(builder.Configuration.GetValue("report-every", 5.0)),
    ExpectLines: builder.Configuration.GetValue("expect-lines", 0L),
    TcpLinesPort: builder.Configuration.GetValue("tcp-lines", 0));

builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.Listen(IPAddress.Loopback, options.Port, listen => listen.Protocols = HttpProtocols.Http2);
    kestrel.AddServerHeader = false;
});
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Information);
builder.Services.AddGrpc();
builder.Services.AddSingleton(options);
builder.Services.AddSingleton<StubStats>();
builder.Services.AddSingleton(new LogSink(options.ExpectLines));
builder.Services.AddHostedService<StubReporter>();
builder.Services.AddHostedService<TcpLineListener>();

var app = builder.Build();
app.MapGrpcService<StubGateway>();
app.Run();
