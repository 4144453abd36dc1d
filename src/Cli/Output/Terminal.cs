namespace Fleet.Cli.Output;

/// <summary>
/// Whether an output is an interactive terminal: only the process's own console stdout when it is not
/// redirected. Any other writer (a file, a pipe, a test's StringWriter) gets plain text without escape codes.
/// </summary>
internal static class Terminal
{
    /// <summary>Moves the cursor home and clears the screen.</summary>
    public const string ClearScreen = "\u001b[H\u001b[2J";

    public static bool IsTerminal(TextWriter writer) => ReferenceEquals(writer, Console.Out) && !Console.IsOutputRedirected;

    /// <summary>The terminal's width in columns, or null when <paramref name="writer"/> is not a terminal or the width is unknown.</summary>
    public static int? Width(TextWriter writer)
    {
        if (!IsTerminal(writer)) return null;
        try
        {
            return Console.WindowWidth > 0 ? Console.WindowWidth : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
