using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Hosting;
using Grpc.AspNetCore.Server;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Fleet.Coordinator.Agents;

public static class AgentsExtensions
{
    public static WebApplicationBuilder AddAgents(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<AgentsOptions>().BindConfiguration(AgentsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<AgentSessions>();
        builder.Services.AddSingleton<AgentRegistry>();
        builder.Services.AddHostedService<AgentConfigPush>();
        builder.Services.AddSingleton<BatchIngest>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<BatchIngest>());
        builder.Services.AddSingleton<IBatchPayloadHandler, AgentEventsHandler>();
        if (builder.Configuration.HasRedis())
        {
            builder.Services.AddSingleton<IAgentPresence, RedisPresence>();
            builder.Services.AddSingleton(sp => new AgentDisconnector(sp.GetRequiredService<AgentSessions>(),
                sp.GetRequiredService<IOptions<RedisOptions>>(), sp.GetRequiredService<IConnectionMultiplexer>()));
            builder.Services.AddHostedService<AgentDisconnector.Listener>();
        }
        else
        {
            builder.Services.AddSingleton<IAgentPresence, InProcessPresence>();
            builder.Services.AddSingleton(sp => new AgentDisconnector(sp.GetRequiredService<AgentSessions>(), sp.GetRequiredService<IOptions<RedisOptions>>()));
        }
        builder.Services.AddOptions<GrpcServiceOptions<AgentGatewayService>>()
            .Configure<IOptions<AgentsOptions>>((grpc, agents) => grpc.MaxReceiveMessageSize = agents.Value.MaxMessageBytes);
        return builder;
    }

    public static IEndpointRouteBuilder MapAgents(this IEndpointRouteBuilder app)
    {
        app.MapGrpcService<AgentGatewayService>();
        app.MapGrpcService<AgentsApi>();
        return app;
    }
}
