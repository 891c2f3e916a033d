using BenchmarkDotNet.Attributes;
using MiniKV.Benchmarks.Support;
using MiniKV.Storage.Index;
using MiniKV.Storage.Segments;

namespace MiniKV.Benchmarks.Storage.Index;

/// <summary>
/// The striped index and read cache without the store around it: the floor under <c>BlobStore.Read</c> of a
/// cached value (the store adds key checks, the bloom probe and its hit counter).
/// </summary>
[MemoryDiagnoser]
public class KeyIndexBenchmarks
{
    private const int Keys = 1000;
    private const int PerThread = 2_000_000;

    private KeyIndex _index = null!;
    private byte[][] _keys = null!;
    private ulong[] _hashes = null!;
    private int[] _order = null!;

    [GlobalSetup]
    public void Setup()
    {
        _index = new KeyIndex(64L << 20, 64 << 10);
        _keys = BenchData.Keys("idx-", Keys);
        _hashes = new ulong[Keys];
        _order = BenchData.Shuffled(Keys, seed: 3);
        var value = BenchData.Value(100);
        for (var i = 0; i < Keys; i++)
        {
            _hashes[i] = KeyComparer.Hash(_keys[i]);
            _index.Apply(_keys[i], _hashes[i], new IndexEntry(i + 1, i * 148L, 100, 1, RecordKind.Put), out _, out _);
            _index.TryCache(_keys[i], _hashes[i], i + 1, value);
        }
    }

    [Benchmark(OperationsPerInvoke = Keys)]
    public int TryGet_Cached()
    {
        var sum = 0;
        foreach (var i in _order)
        {
            _index.TryGet(_keys[i], _hashes[i], out _, out var cached);
            sum += cached!.Length;
        }
        return sum;
    }

    [Benchmark(OperationsPerInvoke = 2 * PerThread)]
    public void TryGet_Cached_2Threads() => Parallel.For(0, 2, t =>
    {
        for (var n = 0; n < PerThread; n++)
        {
            var i = _order[(n + (t * 500)) % Keys];
            _index.TryGet(_keys[i], _hashes[i], out _, out _);
        }
    });

    [Benchmark(OperationsPerInvoke = Keys)]
    public ulong Hash_16B()
    {
        ulong sum = 0;
        foreach (var key in _keys)
        {
            sum += KeyComparer.Hash(key);
        }
        return sum;
    }
}
