namespace MiniKV.Cli.Dev;

/// <summary>How to start one of the servers: the program and the arguments that come before the server's own.</summary>
internal sealed record DevExecutable(string FileName, IReadOnlyList<string> PrefixArguments)
{
    /// <summary>
    /// Finds <paramref name="name"/> (minikv-coord or minikv-volume): an explicit path (a .dll runs under
    /// <c>dotnet</c>, anything else directly), else <c>NAME.dll</c> beside minikv — the Cli project references the
    /// server projects so their build output lands in minikv's directory — run as <c>dotnet NAME.dll</c>.
    /// </summary>
    public static DevExecutable Resolve(string name, string? explicitPath, string baseDirectory, string optionName)
    {
        if (!string.IsNullOrEmpty(explicitPath))
        {
            var full = Path.GetFullPath(explicitPath);
            if (!File.Exists(full))
            {
                throw new UsageException($"{optionName}: {full} does not exist");
            }
            return full.EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? new DevExecutable(DotnetHost(), [full]) : new DevExecutable(full, []);
        }
        var dll = Path.Combine(baseDirectory, name + ".dll");
        if (File.Exists(dll))
        {
            return new DevExecutable(DotnetHost(), [dll]);
        }
        var apphost = Path.Combine(baseDirectory, name);
        if (File.Exists(apphost))
        {
            return new DevExecutable(apphost, []);
        }
        throw new InvalidOperationException($"{name} is not built next to minikv ({baseDirectory}); build it (dotnet build src/MiniKV.Cli) or pass {optionName} PATH");
    }

    /// <summary>The dotnet host that runs minikv itself when there is one (dotnet run sets DOTNET_HOST_PATH), else dotnet on PATH.</summary>
    private static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host))
        {
            return host;
        }
        var self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            return self;
        }
        return "dotnet";
    }
}
