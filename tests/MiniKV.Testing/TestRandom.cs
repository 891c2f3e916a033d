namespace MiniKV.Testing;

/// <summary>A seeded random source whose seed is printed, so a failing run can be replayed (MINIKV_TEST_SEED=...).</summary>
public static class TestRandom
{
    /// <param name="writeLine">Where the seed is printed (a test's output helper).</param>
    public static Random Create(Action<string> writeLine)
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("MINIKV_TEST_SEED"), out var s) ? s : Random.Shared.Next();
        writeLine($"random seed: {seed} (rerun with MINIKV_TEST_SEED={seed})");
        return new Random(seed);
    }

    public static byte[] Bytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    public static bool Heavy => Environment.GetEnvironmentVariable("MINIKV_HEAVY") == "1";
}
