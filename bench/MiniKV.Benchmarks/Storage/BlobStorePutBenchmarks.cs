using BenchmarkDotNet.Attributes;
using MiniKV.Benchmarks.Support;
using MiniKV.Storage;

namespace MiniKV.Benchmarks.Storage;

/// <summary>
/// Puts of 100-byte values in durability Never, overwriting a 65,536-key set (so the index stays one size):
/// one caller awaiting each put, and 16 tasks each awaiting puts in a loop (group commit batches them).
/// Durability Always is fsync-bound and is measured against the disk's fsync rate by <c>storage-report</c>.
/// </summary>
[MemoryDiagnoser]
public class BlobStorePutBenchmarks
{
    private const int Batch = 1000;
    private const int Writers = 16;
    private const int KeySpace = 65_536;

    private readonly byte[] _value = BenchData.Value(100);
    private string _dir = null!;
    private BlobStore _store = null!;
    private byte[][] _keys = null!;
    private int _next;

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _dir = TempDirectory.Create("minikv-bench-put-");
        _store = await BlobStore.OpenAsync(BenchData.Options(Path.Combine(_dir, "data"), DurabilityMode.Never));
        _keys = BenchData.Keys("put-", KeySpace);
        await BenchData.FillAsync(_store, _keys, _value);
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        await _store.DisposeAsync();
        TempDirectory.Delete(_dir);
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public async Task PutAsync_100B_Never_1Caller()
    {
        var next = _next;
        for (var i = 0; i < Batch; i++)
        {
            await _store.PutAsync(_keys[next++ & (KeySpace - 1)], _value);
        }
        _next = next;
    }

    [Benchmark(OperationsPerInvoke = Batch * Writers)]
    public Task PutAsync_100B_Never_16Tasks()
    {
        var tasks = new Task[Writers];
        var start = _next;
        for (var w = 0; w < Writers; w++)
        {
            tasks[w] = PutLoopAsync(start + (w * Batch));
        }
        _next = start + (Writers * Batch);
        return Task.WhenAll(tasks);
    }

    private async Task PutLoopAsync(int first)
    {
        await Task.Yield(); // start every writer on the pool, as concurrent request handlers would be
        for (var i = 0; i < Batch; i++)
        {
            await _store.PutAsync(_keys[(first + i) & (KeySpace - 1)], _value);
        }
    }
}
