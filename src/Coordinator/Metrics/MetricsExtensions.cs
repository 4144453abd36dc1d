using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Metrics;

public static class MetricsExtensions
{
    public static WebApplicationBuilder AddMetrics(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<MetricsOptions>().BindConfiguration(MetricsOptions.Section).ValidateOnStart();
        if (builder.Configuration.HasRedis())
            builder.Services.AddSingleton<ILatestMetrics, RedisLatestMetrics>();
        else
            builder.Services.AddSingleton<ILatestMetrics, InProcessLatestMetrics>();
        builder.Services.AddSingleton<IBatchPayloadHandler, MetricsIngestHandler>();
        builder.Services.AddSingleton<MetricsRetention>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<MetricsRetention>());
        return builder;
    }

    public static IEndpointRouteBuilder MapMetrics(this IEndpointRouteBuilder app)
    {
        app.MapGrpcService<MetricsApi>();
        app.MapGet("/metrics", (HttpContext http, IDbContextFactory<FleetDbContext> db, ILatestMetrics latest, IAgentPresence presence, AgentSessions sessions, CancellationToken ct) =>
            PrometheusExposition.WriteAsync(http, db, latest, presence, sessions, ct));
        return app;
    }
}
