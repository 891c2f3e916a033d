using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using Perfolizer.Horology;

namespace MiniKV.Benchmarks;

/// <summary>
/// The suite's default job: one launch, 2 warm-up and 5 measured iterations of about 250 ms each, so the whole
/// suite runs in a few minutes on 2 cores. Pass <c>--job default</c> (or any other BenchmarkDotNet job) for more.
/// Results go to bench/MiniKV.Benchmarks/BenchmarkDotNet.Artifacts (git-ignored) unless <c>--artifacts</c> says otherwise.
/// </summary>
public static class BenchConfig
{
    public static IConfig Create(string[] args)
    {
        IConfig config = DefaultConfig.Instance;
        if (!HasArgument(args, "--artifacts") && ProjectDirectory() is { } project)
        {
            config = config.WithArtifactsPath(Path.Combine(project, "BenchmarkDotNet.Artifacts"));
        }
        if (HasArgument(args, "--job", "-j"))
        {
            return config;
        }
        return config.AddJob(Job.Default
            .WithLaunchCount(1)
            .WithWarmupCount(2)
            .WithIterationCount(5)
            .WithIterationTime(TimeInterval.FromMilliseconds(250))
            .WithId("Short")
            .AsDefault());
    }

    private static bool HasArgument(string[] args, string name, string? shortName = null)
    {
        foreach (var arg in args)
        {
            if (arg == name || arg == shortName || arg.StartsWith(name + "=", StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>bench/MiniKV.Benchmarks, found by walking up from the build output; null when run from elsewhere.</summary>
    private static string? ProjectDirectory()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "MiniKV.Benchmarks.csproj")))
            {
                return dir.FullName;
            }
        }
        return null;
    }
}
