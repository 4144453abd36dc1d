using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Fleet.Coordinator.Hosting;

public static class RedisExtensions
{
    public static bool HasRedis(this IConfiguration configuration) =>
        !string.IsNullOrWhiteSpace(configuration.GetConnectionString("Redis"));

    /// <summary>Registers the shared Redis connection when ConnectionStrings:Redis is configured.</summary>
    public static WebApplicationBuilder AddRedis(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<RedisOptions>().BindConfiguration(RedisOptions.Section).ValidateOnStart();
        if (!builder.Configuration.HasRedis()) return builder;

        var connectionString = builder.Configuration.GetConnectionString("Redis")!;
        ConfigurationOptions redisOptions;
        try { redisOptions = ConfigurationOptions.Parse(connectionString); }
        catch (ArgumentException ex)
        {
            throw new OptionsValidationException("ConnectionStrings:Redis", typeof(RedisOptions),
                [$"ConnectionStrings:Redis is not a valid Redis configuration: {ex.Message}"]);
        }
        // Keep retrying in the background rather than failing the process when Redis blips.
        redisOptions.AbortOnConnectFail = false;
        builder.Services.AddSingleton<IConnectionMultiplexer>(_ => ConnectionMultiplexer.Connect(redisOptions));
        builder.Services.AddHealthChecks().AddCheck<RedisHealthCheck>("redis", tags: ["ready"]);
        return builder;
    }

    sealed class RedisHealthCheck(IConnectionMultiplexer redis) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                var latency = await redis.GetDatabase().PingAsync();
                return HealthCheckResult.Healthy($"ping {latency.TotalMilliseconds:0.#} ms");
            }
            catch (RedisException ex)
            {
                return HealthCheckResult.Unhealthy("redis unreachable", ex);
            }
        }
    }
}
