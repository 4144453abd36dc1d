using Fleet.Protocol;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Fleet.Coordinator.Security;

public enum ActorKind { User, Agent, Schedule, System }

/// <summary>Who did something: every API call and every internal action carries one (the audit trail records it).</summary>
public sealed record Actor(ActorKind Kind, string Name, string RemoteAddress)
{
    public static Actor System(string name) => new(ActorKind.System, name, "");

    public override string ToString() =>
        RemoteAddress.Length == 0 ? $"{Kind.ToString().ToLowerInvariant()}:{Name}" : $"{Kind.ToString().ToLowerInvariant()}:{Name}@{RemoteAddress}";
}

public static class ActorExtensions
{
    const string Key = "fleet.actor";

    /// <summary>The actor of an ops API call, set by <see cref="ActorInterceptor"/>.</summary>
    public static Actor Actor(this ServerCallContext context) =>
        context.UserState.TryGetValue(Key, out var actor) && actor is Actor a ? a : ActorInterceptor.FromContext(context);

    internal static void SetActor(this ServerCallContext context, Actor actor) => context.UserState[Key] = actor;
}

/// <summary>
/// Attaches the caller to every gRPC and transcoded REST call. Until authentication exists the user name is
/// what the client says in X-Fleet-User (fleetctl sends the OS user); the remote address comes from the connection.
/// </summary>
public sealed class ActorInterceptor : Interceptor
{
    const int MaxUserLength = 128;

    internal static Actor FromContext(ServerCallContext context)
    {
        var remote = context.GetHttpContext().Connection.RemoteIpAddress?.ToString() ?? context.Peer;
        var user = context.RequestHeaders.GetValue(Wire.UserHeader);
        user = string.IsNullOrWhiteSpace(user) ? "anonymous" : new string(user.Trim().Where(c => !char.IsControl(c)).Take(MaxUserLength).ToArray());
        return new Actor(ActorKind.User, user, remote);
    }

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        context.SetActor(FromContext(context));
        return continuation(request, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        context.SetActor(FromContext(context));
        return continuation(request, responseStream, context);
    }
}
