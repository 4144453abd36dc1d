namespace Fleet.Testing;

/// <summary>Where the repository and the built executables are, seen from a test assembly.</summary>
public static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary>Debug or Release: the configuration the tests were built with (the executables are built with it).</summary>
    public static string Configuration { get; } = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;

    public static string Coordinator => Built("src/Coordinator", "Fleet.Coordinator.dll");
    public static string Agent => Built("src/Agent", "fleet-agent.dll");
    public static string Cli => Built("src/Cli", "fleetctl.dll");

    static string Built(string project, string dll)
    {
        var path = Path.Combine(Root, project, "bin", Configuration, "net10.0", dll);
        return File.Exists(path) ? path : throw new FileNotFoundException($"{dll} is not built at {path}; build the solution first");
    }

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Fleet.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException("Fleet.sln not found above " + AppContext.BaseDirectory);
    }
}
