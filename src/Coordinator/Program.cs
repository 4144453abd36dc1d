using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Alerts;
using Fleet.Coordinator.Audit;
using Fleet.Coordinator.Blobs;
using Fleet.Coordinator.Checklists;
using Fleet.Coordinator.Embedded;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Logs;
using Fleet.Coordinator.Metrics;
using Fleet.Coordinator.Notifications;
using Fleet.Coordinator.Runs;
using Fleet.Coordinator.Schedules;
using Fleet.Coordinator.Storage;

var builder = WebApplication.CreateBuilder(args);
builder.AddFleetHosting();
builder.AddStorage();
builder.AddRedis();
builder.AddAgents();
builder.AddBlobs();
builder.AddAudit();
builder.AddMetrics();
builder.AddLogs();
builder.AddRuns();
builder.AddSchedules();
builder.AddChecklists();
builder.AddAlerts();
builder.AddNotifications();
builder.AddEmbeddedAgent();

var app = builder.Build();
app.MapFleetHealth();
app.MapAgents();
app.MapBlobs();
app.MapAudit();
app.MapMetrics();
app.MapLogs();
app.MapRuns();
app.MapSchedules();
app.MapChecklists();
app.MapAlerts();
app.MapNotifications();
app.Run();

/// <summary>Entry point, visible to WebApplicationFactory in tests.</summary>
public partial class Program;
