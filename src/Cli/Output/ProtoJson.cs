using Google.Protobuf;

namespace Fleet.Cli.Output;

/// <summary>
/// Machine-readable output: protobuf's canonical JSON mapping (lowerCamelCase names, enum names, RFC 3339
/// timestamps), the same shape the coordinator's REST API serves, with default values included so a
/// field never disappears because it is zero or empty.
/// </summary>
internal static class ProtoJson
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true).WithIndentation("  "));

    public static void Write(TextWriter writer, IMessage message)
    {
        Formatter.Format(message, writer);
        writer.WriteLine();
    }
}
