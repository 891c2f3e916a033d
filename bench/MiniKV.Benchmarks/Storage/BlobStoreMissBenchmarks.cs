using BenchmarkDotNet.Attributes;
using MiniKV.Benchmarks.Support;
using MiniKV.Storage;

namespace MiniKV.Benchmarks.Storage;

/// <summary>
/// Lookups and reads of absent keys in a store holding 1,000,000 keys (its bloom filter sized for them, the
/// default ExpectedKeys): the filter answers about 99 % of them without touching the index. Every probe is a
/// new key, written into a buffer in a few instructions, so the probes spread over the whole filter.
/// </summary>
[MemoryDiagnoser]
public class BlobStoreMissBenchmarks
{
    private const int Present = 1_000_000;
    private const int Batch = 4096;
    private const int PerThread = 10_000_000;
    private static readonly byte[] AbsentPrefix = "absent--"u8.ToArray();

    private readonly byte[] _key = new byte[BenchData.KeyLength];
    private string _dir = null!;
    private BlobStore _store = null!;
    private long _next;

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _dir = TempDirectory.Create("minikv-bench-miss-");
        _store = await BlobStore.OpenAsync(BenchData.Options(Path.Combine(_dir, "data"), DurabilityMode.Never, readCacheBytes: 0));
        await BenchData.FillAsync(_store, BenchData.Keys("key-", Present), BenchData.Value(16));
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        await _store.DisposeAsync();
        TempDirectory.Delete(_dir);
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int Lookup_Absent()
    {
        var found = 0;
        var next = _next;
        for (var n = 0; n < Batch; n++)
        {
            BenchData.WriteIndexKey(_key, AbsentPrefix, next++);
            found += _store.Lookup(_key, out _) == StoreStatus.Ok ? 1 : 0;
        }
        _next = next;
        return found;
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int Read_Absent()
    {
        var found = 0;
        var next = _next;
        for (var n = 0; n < Batch; n++)
        {
            BenchData.WriteIndexKey(_key, AbsentPrefix, next++);
            found += _store.Read(_key).Status == StoreStatus.Ok ? 1 : 0;
        }
        _next = next;
        return found;
    }

    [Benchmark(OperationsPerInvoke = 2 * PerThread)]
    public void Lookup_Absent_2Threads() => Parallel.For(0, 2, t =>
    {
        Span<byte> key = stackalloc byte[BenchData.KeyLength];
        var next = (long)t << 40;
        for (var n = 0; n < PerThread; n++)
        {
            BenchData.WriteIndexKey(key, AbsentPrefix, next++);
            _store.Lookup(key, out _);
        }
    });
}
