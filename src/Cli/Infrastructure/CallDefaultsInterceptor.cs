using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Fleet.Cli.Infrastructure;

/// <summary>
/// Applies the global options to every call so commands cannot forget them: the <c>x-fleet-user</c> header,
/// the command's cancellation token and, for unary calls, the <c>--timeout</c> deadline (streaming commands
/// that run until interrupted choose their own deadline).
/// </summary>
internal sealed class CallDefaultsInterceptor(string user, TimeSpan timeout, CancellationToken cancellationToken) : Interceptor
{
    public const string UserHeader = "x-fleet-user";

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, WithDefaults(context, unary: true));

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context, BlockingUnaryCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, WithDefaults(context, unary: true));

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncServerStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, WithDefaults(context, unary: false));

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(
        ClientInterceptorContext<TRequest, TResponse> context, AsyncClientStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(WithDefaults(context, unary: false));

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(
        ClientInterceptorContext<TRequest, TResponse> context, AsyncDuplexStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(WithDefaults(context, unary: false));

    private ClientInterceptorContext<TRequest, TResponse> WithDefaults<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context, bool unary)
        where TRequest : class
        where TResponse : class
    {
        var options = context.Options;
        var headers = options.Headers ?? [];
        if (headers.Get(UserHeader) is null) headers.Add(UserHeader, user);
        options = options.WithHeaders(headers);
        if (unary && options.Deadline is null) options = options.WithDeadline(DateTime.UtcNow + timeout);
        if (!options.CancellationToken.CanBeCanceled) options = options.WithCancellationToken(cancellationToken);
        return new ClientInterceptorContext<TRequest, TResponse>(context.Method, context.Host, options);
    }
}
