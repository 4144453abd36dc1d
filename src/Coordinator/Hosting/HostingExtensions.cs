using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Hosting;

public static class HostingExtensions
{
    /// <summary>Options, time, the two Kestrel endpoints (REST on HTTP/1.1, gRPC on HTTP/2) and health endpoints.</summary>
    public static WebApplicationBuilder AddFleetHosting(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<FleetOptions>().BindConfiguration(FleetOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<ListenOptions>().BindConfiguration(ListenOptions.Section).ValidateDataAnnotations()
            .Validate(o => IPAddress.TryParse(o.Address, out _), "Fleet:Listen:Address must be an IP address.")
            .ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<ListenOptions>, DistinctPortsValidator>();
        builder.Services.AddSingleton(TimeProvider.System);

        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            var listen = context.Configuration.GetSection(ListenOptions.Section).Get<ListenOptions>() ?? new ListenOptions();
            if (!IPAddress.TryParse(listen.Address, out var address))
                throw new OptionsValidationException(ListenOptions.Section, typeof(ListenOptions),
                    [$"Fleet:Listen:Address: '{listen.Address}' is not an IP address."]);
            kestrel.Listen(address, listen.RestPort, o => o.Protocols = HttpProtocols.Http1);
            kestrel.Listen(address, listen.GrpcPort, o => o.Protocols = HttpProtocols.Http2);
        });

        builder.Services.AddHealthChecks();
        // One gRPC pipeline for the agent stream and the ops API; REST/JSON is transcoded from the same services.
        builder.Services.AddGrpc(o => o.Interceptors.Add<Security.ActorInterceptor>()).AddJsonTranscoding();
        return builder;
    }

    public static WebApplication MapFleetHealth(this WebApplication app)
    {
        // Liveness: the process answers. Readiness: every dependency tagged "ready" is reachable.
        app.MapHealthChecks("/healthz", new() { Predicate = _ => false });
        app.MapHealthChecks("/readyz", new() { Predicate = check => check.Tags.Contains("ready") });
        return app;
    }

    sealed class DistinctPortsValidator : IValidateOptions<ListenOptions>
    {
        public ValidateOptionsResult Validate(string? name, ListenOptions options) =>
            options.RestPort != 0 && options.RestPort == options.GrpcPort
                ? ValidateOptionsResult.Fail($"Fleet:Listen:RestPort and Fleet:Listen:GrpcPort are both {options.RestPort}; they must differ.")
                : ValidateOptionsResult.Success;
    }
}
