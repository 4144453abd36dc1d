using MassTransit;

namespace Fleet.Coordinator.Notifications;

public static class NotificationsExtensions
{
    /// <summary>
    /// The alert fan-out: router, MassTransit delivery (RabbitMQ when <c>ConnectionStrings:RabbitMq</c> is set, the in-memory
    /// transport otherwise), the sweeper, the retention and the Slack, email and webhook senders.
    /// </summary>
    public static WebApplicationBuilder AddNotifications(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<NotificationsOptions>().BindConfiguration(NotificationsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddHttpClient(HttpResults.ClientName, c => c.Timeout = Timeout.InfiniteTimeSpan); // NotificationsOptions.SendTimeout applies
        services.AddSingleton<INotificationSender, SlackSender>();
        services.AddSingleton<INotificationSender, WebhookSender>();
        services.AddSingleton<INotificationSender, EmailSender>();
        services.AddSingleton<NotificationDelivery>();
        services.AddSingleton<NotificationRouter>();
        services.AddHostedService(sp => sp.GetRequiredService<NotificationRouter>());
        services.AddSingleton<NotificationSweeper>();
        services.AddHostedService(sp => sp.GetRequiredService<NotificationSweeper>());
        services.AddSingleton<NotificationRetention>();
        services.AddHostedService(sp => sp.GetRequiredService<NotificationRetention>());

        var rabbit = builder.Configuration.GetConnectionString("RabbitMq");
        var section = builder.Configuration.GetSection(NotificationsOptions.Section);
        var queue = section["Queue"] is { Length: > 0 } q ? q : new NotificationsOptions().Queue;
        var concurrency = int.TryParse(section["ConcurrentDeliveries"], out var c) && c > 0 ? c : new NotificationsOptions().ConcurrentDeliveries;
        services.AddMassTransit(x =>
        {
            x.AddConsumer<NotificationDueConsumer>();
            // The coordinator never phones home (MassTransit otherwise reports usage to its vendor and warns when it cannot).
            x.ConfigureUsageTelemetryOptions(o => o.Enabled = false);
            if (!string.IsNullOrWhiteSpace(rabbit))
                x.UsingRabbitMq((context, cfg) =>
                {
                    cfg.Host(new Uri(rabbit));
                    cfg.ReceiveEndpoint(queue, e =>
                    {
                        e.ConcurrentMessageLimit = concurrency;
                        e.PrefetchCount = concurrency * 2;
                        e.ConfigureConsumeTopology = false;
                        e.ConfigureConsumer<NotificationDueConsumer>(context);
                    });
                });
            else
                x.UsingInMemory((context, cfg) => cfg.ReceiveEndpoint(queue, e =>
                {
                    e.ConcurrentMessageLimit = concurrency;
                    e.ConfigureConsumer<NotificationDueConsumer>(context);
                }));
        });
        return builder;
    }

    /// <summary>The receivers API: list and show receivers (redacted), and a test-send.</summary>
    public static IEndpointRouteBuilder MapNotifications(this IEndpointRouteBuilder app)
    {
        app.MapGrpcService<ReceiversApi>();
        return app;
    }
}
