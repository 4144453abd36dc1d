using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Hosting;

namespace Fleet.Coordinator.Logs;

public static class LogsExtensions
{
    public static WebApplicationBuilder AddLogs(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<LogsOptions>().BindConfiguration(LogsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        if (builder.Configuration.HasRedis())
        {
            builder.Services.AddSingleton<RedisLogFollowers>();
            builder.Services.AddSingleton<ILogFollowers>(sp => sp.GetRequiredService<RedisLogFollowers>());
            builder.Services.AddHostedService<RedisLogFollowers.Listener>();
        }
        else
        {
            builder.Services.AddSingleton<ILogFollowers, InProcessLogFollowers>();
        }
        builder.Services.AddSingleton<IBatchPayloadHandler, LogsIngestHandler>();
        builder.Services.AddSingleton<LogsRetention>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<LogsRetention>());
        builder.Services.AddHostedService<LogsIndexMerger>();
        return builder;
    }

    public static IEndpointRouteBuilder MapLogs(this IEndpointRouteBuilder app)
    {
        app.MapGrpcService<LogsApi>();
        return app;
    }
}
