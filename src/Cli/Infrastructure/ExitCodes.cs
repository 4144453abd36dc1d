namespace Fleet.Cli.Infrastructure;

internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>The command ran and failed: coordinator unreachable, error status, unexpected exception.</summary>
    public const int Failure = 1;

    /// <summary>The command line itself is wrong: unknown command, bad option value.</summary>
    public const int Usage = 2;

    /// <summary>Interrupted (Ctrl+C), as shells report SIGINT.</summary>
    public const int Cancelled = 130;
}
