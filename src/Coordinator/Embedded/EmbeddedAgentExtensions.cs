namespace Fleet.Coordinator.Embedded;

public static class EmbeddedAgentExtensions
{
    public static WebApplicationBuilder AddEmbeddedAgent(this WebApplicationBuilder builder) => builder;
}
