using Fleet.Coordinator.Agents;

namespace Fleet.Coordinator.Alerts;

public static class AlertsExtensions
{
    public static WebApplicationBuilder AddAlerts(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<AlertsOptions>().BindConfiguration(AlertsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<AlertTransitions>();
        services.AddSingleton<AlertStore>();
        services.AddSingleton<AlertRuleSet>();
        services.AddSingleton<DefaultRules>();
        services.AddSingleton<SilenceStore>();
        services.AddSingleton<ISilences>(sp => sp.GetRequiredService<SilenceStore>());
        services.AddSingleton<AlertEngine>();
        services.AddSingleton<IBatchCommittedHook>(sp => sp.GetRequiredService<AlertEngine>());
        services.AddHostedService(sp => sp.GetRequiredService<AlertEngine>());
        services.AddSingleton<AlertRemediation>();
        services.AddHostedService(sp => sp.GetRequiredService<AlertRemediation>());
        return builder;
    }

    public static IEndpointRouteBuilder MapAlerts(this IEndpointRouteBuilder app)
    {
        app.MapGrpcService<AlertsApi>();
        app.MapGrpcService<RulesApi>();
        app.MapGrpcService<SilencesApi>();
        return app;
    }
}
