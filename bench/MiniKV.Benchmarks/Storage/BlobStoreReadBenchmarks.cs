using BenchmarkDotNet.Attributes;
using MiniKV.Benchmarks.Support;
using MiniKV.Storage;

namespace MiniKV.Benchmarks.Storage;

/// <summary>
/// <see cref="BlobStore.Read"/> of 1,000 preloaded keys: 100-byte values served by the read cache (on one thread
/// and on two in parallel), and 4 KiB values with the cache off (ReadCacheBytes = 0), read from the segment
/// (the OS page cache holds it) with the record CRC checked.
/// </summary>
[MemoryDiagnoser]
public class BlobStoreReadBenchmarks
{
    private const int Keys = 1000;
    private const int PerThread = 2_000_000;

    private string _dir = null!;
    private BlobStore _cached = null!;
    private BlobStore _uncached = null!;
    private byte[][] _keys = null!;
    private int[] _order = null!;

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _dir = TempDirectory.Create("minikv-bench-read-");
        _keys = BenchData.Keys("get-", Keys);
        _order = BenchData.Shuffled(Keys, seed: 7);
        _cached = await BlobStore.OpenAsync(BenchData.Options(Path.Combine(_dir, "cached"), DurabilityMode.Never));
        await BenchData.FillAsync(_cached, _keys, BenchData.Value(100));
        foreach (var key in _keys)
        {
            _cached.Read(key); // the first read of a key fills the cache
        }
        _uncached = await BlobStore.OpenAsync(BenchData.Options(Path.Combine(_dir, "uncached"), DurabilityMode.Never, readCacheBytes: 0));
        await BenchData.FillAsync(_uncached, _keys, BenchData.Value(4096));
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        var stats = _cached.GetStats();
        if (stats.CacheMisses != Keys)
        {
            throw new InvalidOperationException($"expected only the {Keys} preload reads to miss the cache; {stats.CacheMisses} did");
        }
        await _cached.DisposeAsync();
        await _uncached.DisposeAsync();
        TempDirectory.Delete(_dir);
    }

    [Benchmark(OperationsPerInvoke = Keys)]
    public int Read_CacheHit_100B()
    {
        var sum = 0;
        foreach (var i in _order)
        {
            sum += _cached.Read(_keys[i]).Value.Length;
        }
        return sum;
    }

    [Benchmark(OperationsPerInvoke = 2 * PerThread)]
    public void Read_CacheHit_100B_2Threads() => Parallel.For(0, 2, t => ReadLoop(_cached, t * 500));

    [Benchmark(OperationsPerInvoke = Keys)]
    public int Read_Uncached_4KiB()
    {
        var sum = 0;
        foreach (var i in _order)
        {
            sum += _uncached.Read(_keys[i]).Value.Length;
        }
        return sum;
    }

    private int ReadLoop(BlobStore store, int offset)
    {
        var sum = 0;
        for (var n = 0; n < PerThread; n++)
        {
            sum += store.Read(_keys[_order[(n + offset) % Keys]]).Value.Length;
        }
        return sum;
    }
}
