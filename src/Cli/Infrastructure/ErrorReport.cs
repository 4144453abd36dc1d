using System.Net.Http;
using System.Net.Sockets;
using System.Security.Authentication;
using Grpc.Core;

namespace Fleet.Cli.Infrastructure;

/// <summary>Turns any failure of a command into one readable line (no stack trace) and an exit code.</summary>
internal static class ErrorReport
{
    public static (string Message, int ExitCode) Describe(Exception exception, Uri coordinator, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var address = coordinator.OriginalString;
        switch (exception)
        {
            case OperationCanceledException when cancellationToken.IsCancellationRequested:
            case RpcException { StatusCode: StatusCode.Cancelled } when cancellationToken.IsCancellationRequested:
                return ("cancelled", ExitCodes.Cancelled);

            // Raised by the client itself: the coordinator never answered within the deadline.
            case RpcException { StatusCode: StatusCode.DeadlineExceeded, Status.DebugException: null } rpc when IsClientDeadline(rpc):
                return ($"cannot reach the coordinator at {address} (no answer within {DurationText.Format(timeout)})", ExitCodes.Failure);

            // Transport failure: the call never reached a gRPC server (refused, DNS, TLS, HTTP/2 handshake, reset).
            case RpcException { StatusCode: StatusCode.Unavailable or StatusCode.Internal or StatusCode.Unknown, Status.DebugException: { } transport }:
                return ($"cannot reach the coordinator at {address} ({TransportReason(transport, coordinator)})", ExitCodes.Failure);

            // Grpc.Net.Client's wording when the answer is HTTP but not gRPC (a web server, a proxy, the REST port).
            case RpcException rpc when rpc.Status.Detail.StartsWith(BadGrpcResponse, StringComparison.Ordinal):
                var what = OneLine(rpc.Status.Detail[BadGrpcResponse.Length..]).TrimEnd('.');
                return ($"cannot reach the coordinator at {address} (the server there does not speak gRPC: {what})", ExitCodes.Failure);

            case RpcException rpc:
                var detail = OneLine(rpc.Status.Detail);
                var word = Readable(rpc.StatusCode);
                return (detail.Length == 0 ? word : $"{word}: {detail}", ExitCodes.Failure);

            case HttpRequestException or SocketException:
                return ($"cannot reach the coordinator at {address} ({TransportReason(exception, coordinator)})", ExitCodes.Failure);

            default:
                return ($"unexpected error: {exception.GetType().Name}: {OneLine(exception.Message)}", ExitCodes.Failure);
        }
    }

    private const string BadGrpcResponse = "Bad gRPC response. ";

    /// <summary>Readable words for gRPC status codes, e.g. NotFound → "not found".</summary>
    public static string Readable(StatusCode code) => code switch
    {
        StatusCode.OK => "ok",
        StatusCode.Cancelled => "cancelled",
        StatusCode.Unknown => "unknown error",
        StatusCode.InvalidArgument => "invalid argument",
        StatusCode.DeadlineExceeded => "deadline exceeded",
        StatusCode.NotFound => "not found",
        StatusCode.AlreadyExists => "already exists",
        StatusCode.PermissionDenied => "permission denied",
        StatusCode.ResourceExhausted => "resource exhausted",
        StatusCode.FailedPrecondition => "failed precondition",
        StatusCode.Aborted => "aborted",
        StatusCode.OutOfRange => "out of range",
        StatusCode.Unimplemented => "not supported by this coordinator",
        StatusCode.Internal => "internal error",
        StatusCode.Unavailable => "unavailable",
        StatusCode.DataLoss => "data loss",
        StatusCode.Unauthenticated => "not authenticated",
        _ => code.ToString(),
    };

    // Grpc.Net.Client reports its own deadline with this detail; a server may also answer DeadlineExceeded with its own text.
    private static bool IsClientDeadline(RpcException rpc) =>
        rpc.Status.Detail.Length == 0 || rpc.Status.Detail.Equals("Deadline Exceeded", StringComparison.OrdinalIgnoreCase);

    private static string TransportReason(Exception exception, Uri coordinator)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case SocketException socket:
                    return SocketReason(socket.SocketErrorCode, coordinator) ?? OneLine(socket.Message);
                case HttpRequestException { HttpRequestError: HttpRequestError.NameResolutionError }:
                    return $"cannot resolve host '{coordinator.Host}'";
                case HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError }:
                case AuthenticationException:
                    return "TLS handshake failed; is it serving https:// with a trusted certificate?";
                case HttpProtocolException:
                case HttpRequestException { HttpRequestError: HttpRequestError.HttpProtocolError or HttpRequestError.VersionNegotiationError }:
                // "An HTTP/2 connection could not be established because the server did not complete the HTTP/2 handshake."
                case HttpRequestException { HttpRequestError: HttpRequestError.Unknown } unknown when unknown.Message.Contains("HTTP/2", StringComparison.Ordinal):
                    return coordinator.Scheme == Uri.UriSchemeHttp
                        ? "HTTP/2 handshake failed; is this the coordinator's gRPC port? plaintext http:// needs an HTTP/2 listener"
                        : "HTTP/2 handshake failed; is this the coordinator's gRPC port?";
                case HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded }:
                    return "the connection was closed before a response";
            }
        }
        var innermost = exception;
        while (innermost.InnerException is not null) innermost = innermost.InnerException;
        return OneLine(innermost.Message);
    }

    private static string? SocketReason(SocketError error, Uri coordinator) => error switch
    {
        SocketError.ConnectionRefused => "connection refused",
        SocketError.HostNotFound or SocketError.NoData or SocketError.TryAgain => $"cannot resolve host '{coordinator.Host}'",
        SocketError.TimedOut => "connection timed out",
        SocketError.NetworkUnreachable or SocketError.NetworkDown => "network unreachable",
        SocketError.HostUnreachable or SocketError.HostDown => "host unreachable",
        SocketError.ConnectionReset => "connection reset",
        SocketError.ConnectionAborted => "connection aborted",
        SocketError.AddressNotAvailable => "address not available",
        _ => null,
    };

    private static string OneLine(string text)
    {
        var line = text.ReplaceLineEndings(" ").Trim();
        return line.Length <= 300 ? line : line[..297] + "...";
    }
}
