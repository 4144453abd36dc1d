using Fleet.Protocol;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Fleet.Coordinator.Hosting;

/// <summary>The ops API's checks of request fields: a bad value is InvalidArgument (REST 400) naming the field.</summary>
public static class ApiArguments
{
    public static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    public static DateTime Time(Timestamp timestamp, string field)
    {
        try { return timestamp.ToDateTime(); }
        catch (InvalidOperationException) { throw Invalid($"{field}: '{timestamp}' is not a valid timestamp"); }
    }

    public static void AgentId(string id, string field)
    {
        if (!AgentIds.IsValid(id)) throw Invalid(AgentIds.Describe(field, id));
    }
}
