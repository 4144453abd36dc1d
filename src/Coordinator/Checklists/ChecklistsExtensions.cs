using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Checklists;

public static class ChecklistsExtensions
{
    /// <summary>Checklist definitions (validated on start: a bad file stops the coordinator naming the item), evaluation and the API.</summary>
    public static WebApplicationBuilder AddChecklists(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<ChecklistsOptions>().BindConfiguration(ChecklistsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton(sp => ChecklistCatalog.Load(sp.GetRequiredService<IOptions<ChecklistsOptions>>().Value.ResolvedFile));
        builder.Services.AddSingleton<ChecklistStatus>();
        return builder;
    }

    public static IEndpointRouteBuilder MapChecklists(this IEndpointRouteBuilder app)
    {
        app.MapGrpcService<ChecklistsApi>();
        return app;
    }
}
