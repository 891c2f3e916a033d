using System.Diagnostics;
using MiniKV.Benchmarks.Support;
using MiniKV.Storage;
using MiniKV.Storage.IO;
using MiniKV.Storage.Snapshots;

namespace MiniKV.Benchmarks.Report;

/// <summary>A store of 1,000,000 keys (16-byte keys, 16-byte values), built once and shared by the bloom and restart scenarios.</summary>
internal sealed class Dataset : IAsyncDisposable
{
    public const int KeyCount = 1_000_000;
    private readonly TempDirectory _dir = new("minikv-report-1m-");
    private bool _built;

    public Dataset() => Options = BenchData.Options(_dir.Sub("data"), DurabilityMode.Never, readCacheBytes: 0);

    public StoreOptions Options { get; }

    public string SnapshotPath => Path.Combine(Options.DataDirectory, IndexSnapshot.FileName);

    public static byte[] KeyOf(long i) => BenchData.Key("key-", i);

    public async Task EnsureBuiltAsync(ReportTable table)
    {
        if (_built)
        {
            return;
        }
        var store = await BlobStore.OpenAsync(Options);
        var keys = new byte[KeyCount][];
        for (var i = 0; i < KeyCount; i++)
        {
            keys[i] = KeyOf(i);
        }
        var elapsed = await BenchData.FillAsync(store, keys, BenchData.Value(16));
        await store.DisposeAsync(); // writes the snapshot
        _built = true;
        table.Add(new ReportRow($"insert {KeyCount:N0} new keys (16 B values), Never, 16 callers", Fmt.Ops(KeyCount / elapsed.TotalSeconds), "1 run", "", "", "(dataset build)", "—",
            "builds the dataset for the bloom and restart rows"));
    }

    public ValueTask DisposeAsync()
    {
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }
}

// Restart from the index snapshot and by a full rebuild, and the index's memory per key.
public static partial class StorageReport
{
    private static async Task RestartAsync(ReportSettings settings, ReportTable table, Dataset dataset)
    {
        await dataset.EnsureBuiltAsync(table);
        List<double> fromSnapshot = [], rebuild = [], parse = [], snapshotGcs = [], snapshotCpu = [];
        for (var run = -1; run < settings.Runs; run++)
        {
            // The snapshot file alone, read sequentially into a list of entries (what tests use; OpenAsync loads its sections in parallel).
            var clock = Stopwatch.StartNew();
            var data = IndexSnapshot.TryRead(PhysicalFileSystem.Instance, dataset.Options.DataDirectory, out var rejected)
                ?? throw new InvalidOperationException($"no usable snapshot: {rejected}");
            var parseMs = clock.Elapsed.TotalMilliseconds;
            if (data.Entries.Count != Dataset.KeyCount)
            {
                throw new InvalidOperationException($"the snapshot holds {data.Entries.Count} entries");
            }
            data = null;
            GC.Collect();

            var gcs = GC.CollectionCount(0) + GC.CollectionCount(1) + GC.CollectionCount(2);
            var cpu = Environment.CpuUsage.TotalTime;
            var (snapshotMs, info) = await TimedOpenAsync(dataset.Options);
            var cpuMs = (Environment.CpuUsage.TotalTime - cpu).TotalMilliseconds; // includes the dispose's snapshot write
            gcs = GC.CollectionCount(0) + GC.CollectionCount(1) + GC.CollectionCount(2) - gcs;
            if (!info.FromSnapshot)
            {
                throw new InvalidOperationException($"expected an open from the snapshot: {info.SnapshotRejectedBecause}");
            }

            File.Delete(dataset.SnapshotPath);
            GC.Collect();
            var (rebuildMs, rebuildInfo) = await TimedOpenAsync(dataset.Options); // its dispose writes the snapshot again
            if (rebuildInfo.FromSnapshot || rebuildInfo.RecordsScanned < Dataset.KeyCount)
            {
                throw new InvalidOperationException($"expected a full rebuild; scanned {rebuildInfo.RecordsScanned}");
            }
            GC.Collect();
            if (run < 0)
            {
                continue; // warm-up: JIT of the recovery code
            }
            fromSnapshot.Add(snapshotMs);
            rebuild.Add(rebuildMs);
            parse.Add(parseMs);
            snapshotGcs.Add(gcs);
            snapshotCpu.Add(info.CpuTime.TotalMilliseconds);
            Progress($"[restart] run {run + 1}: snapshot {Fmt.Ms(snapshotMs)} (recovery CPU {Fmt.Ms(info.CpuTime.TotalMilliseconds)}, open+dispose CPU {Fmt.Ms(cpuMs)}; sequential parse alone {Fmt.Ms(parseMs)}, {gcs} GCs), rebuild {Fmt.Ms(rebuildMs)}");
        }
        var snapshot = Measure.Median(fromSnapshot);
        table.Add(new ReportRow($"OpenAsync from snapshot, {Dataset.KeyCount:N0} keys", Fmt.Ms(snapshot), Fmt.Spread(fromSnapshot, Fmt.Ms), "", "",
            "≤ 100 ms", Fmt.Verdict(snapshot <= 100),
            $"warm page cache; {Measure.Median(snapshotGcs):0} GCs during the open; recovery CPU time {Fmt.Ms(Measure.Median(snapshotCpu))} (medians)"));
        table.Add(new ReportRow("  the snapshot file read sequentially into a list (read, CRC, parse)", Fmt.Ms(Measure.Median(parse)), Fmt.Spread(parse, Fmt.Ms), "", "",
            "diagnostic", "—", "IndexSnapshot.TryRead, timed separately; not OpenAsync's path"));
        var full = Measure.Median(rebuild);
        table.Add(new ReportRow($"OpenAsync full rebuild (snapshot deleted), {Dataset.KeyCount:N0} keys", Fmt.Ms(full), Fmt.Spread(rebuild, Fmt.Ms),
            $"from snapshot: {Fmt.Ms(snapshot)}", Fmt.Ratio(full / snapshot), "report beside it", "—", "scans every record, checks both CRCs"));
    }

    private static async Task<(double Milliseconds, RecoveryInfo Info)> TimedOpenAsync(StoreOptions options)
    {
        var clock = Stopwatch.StartNew();
        var store = await BlobStore.OpenAsync(options);
        var elapsed = clock.Elapsed.TotalMilliseconds;
        var info = store.GetStats().LastRecovery!;
        await store.DisposeAsync();
        return (elapsed, info);
    }

    private static async Task MemoryPerKeyAsync(ReportSettings settings, ReportTable table)
    {
        const int Keys = 1_000_000;
        const int Writers = 16;
        List<double> perKey = [], rates = [];
        var value = BenchData.Value(16);
        for (var run = 0; run < settings.Runs; run++)
        {
            using var dir = new TempDirectory("minikv-report-memory-");
            var store = await BlobStore.OpenAsync(BenchData.Options(dir.Sub("data"), DurabilityMode.Never, readCacheBytes: 0));
            var before = GC.GetTotalMemory(forceFullCollection: true);
            var clock = Stopwatch.StartNew();
            var tasks = new Task[Writers];
            for (var w = 0; w < Writers; w++)
            {
                var first = w;
                tasks[w] = Task.Run(async () =>
                {
                    var key = new byte[BenchData.KeyLength]; // PutAsync copies the key before it returns
                    for (var i = first; i < Keys; i += Writers)
                    {
                        BenchData.WriteKey(key, "mem-", i);
                        await store.PutAsync(key, value);
                    }
                });
            }
            await Task.WhenAll(tasks);
            var elapsed = clock.Elapsed;
            var after = GC.GetTotalMemory(forceFullCollection: true);
            GC.KeepAlive(store);
            await store.DisposeAsync();
            perKey.Add(((after - before) / (double)Keys) - BenchData.KeyLength);
            rates.Add(Keys / elapsed.TotalSeconds);
            Progress($"[memory] run {run + 1}: {perKey[^1]:N1} bytes/key beyond the key, insert {Fmt.Ops(rates[^1])}");
        }
        var median = Measure.Median(perKey);
        table.Add(new ReportRow($"index memory per key, {Keys:N0} keys of 16 B, ReadCacheBytes 0", Fmt.Count(median, 1) + " B + key", Fmt.Spread(perKey, v => Fmt.Count(v, 1)),
            "", "", "< 100 B + key length", Fmt.Verdict(median < 100),
            $"GC.GetTotalMemory(true) delta ÷ keys − 16; the bloom filter (~1.2 B/key, sized by ExpectedKeys at open) is outside the delta"));
        table.Add(new ReportRow($"insert {Keys:N0} new keys (16 B values), Never, {Writers} callers", Fmt.Ops(Measure.Median(rates)), Fmt.Spread(rates, Fmt.Ops),
            "", "", "report", "—", "the memory runs' inserts, timed: new keys grow the index (compare the overwrite rows above)"));
    }
}
