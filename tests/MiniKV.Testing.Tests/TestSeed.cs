using Xunit.Abstractions;

namespace MiniKV.Testing.Tests;

/// <summary>A seeded random source whose seed is printed, so a failing run replays with MINIKV_TEST_SEED=...</summary>
public static class TestSeed
{
    public static Random Create(ITestOutputHelper output)
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("MINIKV_TEST_SEED"), out var s) ? s : Random.Shared.Next();
        output.WriteLine($"random seed: {seed} (rerun with MINIKV_TEST_SEED={seed})");
        return new Random(seed);
    }
}
