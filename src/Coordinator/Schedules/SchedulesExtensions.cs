namespace Fleet.Coordinator.Schedules;

public static class SchedulesExtensions
{
    public static WebApplicationBuilder AddSchedules(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<SchedulesOptions>().BindConfiguration(SchedulesOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<IOpenWindows, OpenWindows>();
        services.AddSingleton<OccurrenceDriver>();
        services.AddSingleton<WindowScheduler>();
        services.AddHostedService<ScheduleDefaults>();
        services.AddHostedService(sp => sp.GetRequiredService<WindowScheduler>());
        return builder;
    }

    public static IEndpointRouteBuilder MapSchedules(this IEndpointRouteBuilder app)
    {
        app.MapGrpcService<SchedulesApi>();
        return app;
    }
}
