using Fleet.Protocol.V1;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Agents;

/// <summary>
/// When "Fleet:Agents" changes at run time (central collector intervals, for instance), every agent this replica
/// holds gets its new effective configuration at once instead of at its next reconnect.
/// </summary>
sealed partial class AgentConfigPush(AgentSessions sessions, IOptionsMonitor<AgentsOptions> options, ILogger<AgentConfigPush> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var changed = System.Threading.Channels.Channel.CreateBounded<AgentsOptions>(new System.Threading.Channels.BoundedChannelOptions(1)
        {
            FullMode = System.Threading.Channels.BoundedChannelFullMode.DropOldest,
        });
        using var subscription = options.OnChange(o => changed.Writer.TryWrite(o));
        try
        {
            await foreach (var current in changed.Reader.ReadAllAsync(stoppingToken))
            {
                var pushed = 0;
                foreach (var session in sessions.All)
                {
                    var config = AgentGatewayService.EffectiveConfig(session.Tags, current);
                    if (session.Outgoing.Writer.TryWrite(new CoordinatorMessage { Config = config })) pushed++;
                }
                LogPushed(pushed);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Agent configuration changed; sent the new effective configuration to {Count} connected agents")]
    partial void LogPushed(int count);
}
