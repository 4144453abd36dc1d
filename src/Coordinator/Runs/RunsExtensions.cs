using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Hosting;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Fleet.Coordinator.Runs;

public static class RunsExtensions
{
    public static WebApplicationBuilder AddRuns(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<RunsOptions>().BindConfiguration(RunsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<RunSignal>();
        if (builder.Configuration.HasRedis())
        {
            services.AddSingleton(sp => ActivatorUtilities.CreateInstance<RunMessenger>(sp, sp.GetRequiredService<IConnectionMultiplexer>()));
            services.AddHostedService<RunMessenger.Listener>();
        }
        else
        {
            services.AddSingleton(sp => new RunMessenger(sp.GetRequiredService<AgentSessions>(), sp.GetRequiredService<RunSignal>(),
                sp.GetRequiredService<IOptions<RedisOptions>>(), sp.GetRequiredService<IOptions<FleetOptions>>(), sp.GetRequiredService<ILogger<RunMessenger>>()));
        }
        services.AddSingleton<RunCreator>();
        services.AddSingleton<RunOutput>();
        services.AddSingleton<RunEngine>();
        services.AddHostedService(sp => sp.GetRequiredService<RunEngine>());
        services.AddSingleton<IBatchPayloadHandler, TaskUpdatesHandler>();
        services.AddSingleton<IAgentConnectedHook, RunRedelivery>();
        return builder;
    }

    public static IEndpointRouteBuilder MapRuns(this IEndpointRouteBuilder app)
    {
        app.MapGrpcService<RunsApi>();
        // The full output, byte for byte, as text/plain (the host may be an agent id or a hostname).
        app.MapGet("/api/v1/runs/{id}/invocations/{host}/output", async (string id, string host, HttpContext http, IDbContextFactory<FleetDbContext> dbFactory, RunOutput output) =>
        {
            var invocation = await RunsApi.FindInvocationAsync(dbFactory, id, host, http.RequestAborted);
            if (invocation is null)
                return Results.Problem(statusCode: StatusCodes.Status404NotFound, title: "Not found", detail: $"run '{id}' has no invocation on '{host}'");
            return Results.Stream(async body =>
            {
                await foreach (var piece in output.ReadAsync(invocation, http.RequestAborted))
                    await body.WriteAsync(piece, http.RequestAborted);
            }, "text/plain; charset=utf-8");
        });
        return app;
    }
}
