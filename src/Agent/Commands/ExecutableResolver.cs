namespace Fleet.Agent.Commands;

/// <summary>Finds the file a <see cref="CommandSpec"/> runs, the way execvp would but on the child's PATH.</summary>
internal static class ExecutableResolver
{
    /// <summary>
    /// A name without '/' is searched on <paramref name="searchPath"/> (empty and relative entries are skipped — the
    /// agent never runs things from "the current directory" by accident); a name with '/' is used as a path.
    /// Returns the absolute path, or null with <paramref name="error"/> naming the command (and the PATH searched).
    /// </summary>
    internal static string? Resolve(string fileName, string? searchPath, string? workingDirectory, out string? error)
    {
        error = null;
        if (fileName.Contains('/'))
        {
            var baseDirectory = workingDirectory is null ? Environment.CurrentDirectory : Path.GetFullPath(workingDirectory);
            var full = Path.GetFullPath(fileName, baseDirectory);
            if (Directory.Exists(full)) error = $"Command '{fileName}' is a directory ('{full}')";
            else if (!File.Exists(full)) error = $"Command '{fileName}' does not exist ('{full}')";
            else if (!IsExecutable(full)) error = $"Command '{fileName}' is not executable ('{full}')";
            return error is null ? full : null;
        }

        string? notExecutable = null;
        foreach (var directory in (searchPath ?? "").Split(':'))
        {
            if (directory.Length == 0 || !Path.IsPathRooted(directory)) continue;
            var candidate = Path.Combine(directory, fileName);
            if (!File.Exists(candidate)) continue; // also skips directories
            if (IsExecutable(candidate)) return candidate;
            notExecutable ??= candidate;
        }

        var where = searchPath is null ? "PATH is not set" : $"PATH '{searchPath}'";
        error = notExecutable is null
            ? $"Command '{fileName}' not found on {where}"
            : $"Command '{fileName}' not found as an executable on {where} ('{notExecutable}' exists but is not executable)";
        return null;
    }

    private static bool IsExecutable(string path) => Libc.Access(path, Libc.X_OK) == 0;
}
