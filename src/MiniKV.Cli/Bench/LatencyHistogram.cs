using System.Numerics;

namespace MiniKV.Cli.Bench;

/// <summary>
/// A log-linear latency histogram in microseconds (the HdrHistogram idea in 60 lines): values below 64 µs have a
/// bucket each; above, every power of two is split into 32 equal buckets, so a reported percentile is within 1/32
/// (3 %) of the true value, from 1 µs up to hours, in a fixed 1,600-counter array. Why not HdrHistogram 2.5.0:
/// this is all the bench needs, costs no dependency, and recording is one LZCNT and an increment.
/// Not thread-safe: each worker records into its own and the results are merged.
/// </summary>
internal sealed class LatencyHistogram
{
    private const int SubBucketBits = 5; // 32 buckets per power of two
    private const int SubBuckets = 1 << SubBucketBits;
    private const int LinearLimit = 2 * SubBuckets; // values below this are counted exactly
    private const int Magnitudes = 50;

    private readonly long[] _counts = new long[LinearLimit + (Magnitudes * SubBuckets)];

    public long Count { get; private set; }

    public long Max { get; private set; }

    public long Min { get; private set; } = long.MaxValue;

    public double Sum { get; private set; }

    public void Record(long microseconds)
    {
        if (microseconds < 0)
        {
            microseconds = 0;
        }
        _counts[Index(microseconds)]++;
        Count++;
        Sum += microseconds;
        Max = Math.Max(Max, microseconds);
        Min = Math.Min(Min, microseconds);
    }

    public void Add(LatencyHistogram other)
    {
        for (var i = 0; i < _counts.Length; i++)
        {
            _counts[i] += other._counts[i];
        }
        Count += other.Count;
        Sum += other.Sum;
        Max = Math.Max(Max, other.Max);
        Min = Math.Min(Min, other.Min);
    }

    /// <summary>The value at quantile <paramref name="q"/> (0..1): the middle of the bucket holding it, capped by the maximum seen.</summary>
    public long Percentile(double q)
    {
        if (Count == 0)
        {
            return 0;
        }
        var rank = (long)Math.Ceiling(Math.Clamp(q, 0, 1) * Count);
        rank = Math.Max(rank, 1);
        long seen = 0;
        for (var i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                var (low, high) = Bounds(i);
                return Math.Clamp((low + high) / 2, Min, Max);
            }
        }
        return Max;
    }

    public double Mean => Count == 0 ? 0 : Sum / Count;

    internal static int Index(long value)
    {
        if (value < LinearLimit)
        {
            return (int)value;
        }
        var magnitude = 63 - BitOperations.LeadingZeroCount((ulong)value); // >= SubBucketBits + 1
        var shift = magnitude - SubBucketBits;
        var sub = (int)((value >> shift) & (SubBuckets - 1));
        var index = LinearLimit + ((magnitude - SubBucketBits - 1) * SubBuckets) + sub;
        return Math.Min(index, LinearLimit + (Magnitudes * SubBuckets) - 1);
    }

    /// <summary>The values [low, high] that land in bucket <paramref name="index"/>.</summary>
    internal static (long Low, long High) Bounds(int index)
    {
        if (index < LinearLimit)
        {
            return (index, index);
        }
        var offset = index - LinearLimit;
        var magnitude = (offset / SubBuckets) + SubBucketBits + 1;
        var sub = offset % SubBuckets;
        var shift = magnitude - SubBucketBits;
        var low = (1L << magnitude) + ((long)sub << shift);
        return (low, low + (1L << shift) - 1);
    }
}
