using System.Globalization;
using System.Text;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Audit;

public static class AuditExtensions
{
    public static WebApplicationBuilder AddAudit(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<AuditOptions>().BindConfiguration(AuditOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<AuditLog>();
        builder.Services.AddSingleton<AuditAnchors>();
        builder.Services.AddSingleton<AuditVerifier>();
        builder.Services.AddSingleton<AuditRetention>();
        if (builder.Configuration.Provider() == StorageProvider.Postgres)
            builder.Services.AddSingleton<IAuditSealStore, PostgresAuditSealStore>();
        else
            builder.Services.AddSingleton<IAuditSealStore, SqliteAuditSealStore>();
        builder.Services.AddSingleton<AuditSealer>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<AuditSealer>());
        builder.Services.AddHostedService<StartupAudit>();
        return builder;
    }

    public static IEndpointRouteBuilder MapAudit(this IEndpointRouteBuilder app)
    {
        app.MapGrpcService<AuditApi>();
        // CSV for spreadsheets and auditors: same filters as GET /api/v1/audit.
        app.MapGet("/api/v1/audit:export", AuditExport.WriteAsync);
        return app;
    }
}
