using Google.Protobuf;

namespace Fleet.Cli.Output;

/// <summary>
/// JSON Lines: one message per line in protobuf's canonical JSON mapping (the shape <see cref="ProtoJson"/>
/// prints, without indentation), default values included. Newlines inside strings are escaped, so a record
/// is always exactly one line.
/// </summary>
internal static class JsonLines
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    public static async Task WriteAsync(TextWriter writer, IMessage message, CancellationToken cancellationToken)
    {
        await writer.WriteAsync(Formatter.Format(message).AsMemory(), cancellationToken);
        await writer.WriteAsync("\n".AsMemory(), cancellationToken);
    }
}
