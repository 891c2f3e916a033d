using BenchmarkDotNet.Attributes;
using MiniKV.Storage.Bloom;

namespace MiniKV.Benchmarks.Storage.Bloom;

/// <summary>The raw blocked bloom filter, sized for 1,000,000 keys at 1 % and holding that many.</summary>
[MemoryDiagnoser]
public class BloomFilterBenchmarks
{
    private const int Keys = 1_000_000;
    private const int Probes = 4096;
    private const int PerThread = 10_000_000;

    private BloomFilter _filter = null!;
    private ulong[] _present = null!;
    private ulong[] _absent = null!;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(11);
        _filter = new BloomFilter(Keys, 0.01);
        _present = new ulong[Probes];
        for (var i = 0; i < Keys; i++)
        {
            var hash = (ulong)random.NextInt64();
            _filter.Add(hash);
            if (i < Probes)
            {
                _present[i] = hash;
            }
        }
        _absent = new ulong[Probes];
        for (var i = 0; i < Probes; i++)
        {
            _absent[i] = (ulong)random.NextInt64();
        }
    }

    [Benchmark(OperationsPerInvoke = Probes)]
    public int MayContain_Absent()
    {
        var maybe = 0;
        foreach (var hash in _absent)
        {
            maybe += _filter.MayContain(hash) ? 1 : 0;
        }
        return maybe;
    }

    [Benchmark(OperationsPerInvoke = Probes)]
    public int MayContain_Present()
    {
        var maybe = 0;
        foreach (var hash in _present)
        {
            maybe += _filter.MayContain(hash) ? 1 : 0;
        }
        return maybe;
    }

    [Benchmark(OperationsPerInvoke = 2 * PerThread)]
    public void MayContain_Absent_2Threads() => Parallel.For(0, 2, t =>
    {
        for (var n = 0; n < PerThread; n++)
        {
            _filter.MayContain(_absent[(n + (t * 1000)) & (Probes - 1)]);
        }
    });

    [Benchmark(OperationsPerInvoke = Probes)]
    public void Add()
    {
        foreach (var hash in _present)
        {
            _filter.Add(hash);
        }
    }
}
