using System.Diagnostics;

namespace MiniKV.RaftBench;

/// <summary>Percentiles of latencies recorded as <see cref="Stopwatch"/> ticks (nearest rank).</summary>
internal readonly record struct LatencySummary(double P50Ms, double P99Ms, double P999Ms, double MaxMs)
{
    public static LatencySummary From(List<long> ticks)
    {
        if (ticks.Count == 0)
        {
            return default;
        }
        ticks.Sort();
        return new LatencySummary(At(ticks, 0.50), At(ticks, 0.99), At(ticks, 0.999), Ms(ticks[^1]));
    }

    private static double At(List<long> sorted, double p) =>
        Ms(sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)]);

    private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
}
