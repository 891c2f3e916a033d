using MiniKV.Benchmarks.Support;
using MiniKV.Storage;
using MiniKV.Storage.Bloom;
using MiniKV.Storage.Segments;

namespace MiniKV.Benchmarks.Report;

// Reads: cache hits on one and two threads, uncached 4 KiB values, and misses answered by the bloom filter.
public static partial class StorageReport
{
    private const int AbsentKeys = 65_536;
    private static readonly byte[] HotPrefix = "hot-key-"u8.ToArray();
    private static readonly byte[] UncachedPrefix = "unc-key-"u8.ToArray();
    private static readonly byte[] AbsentPrefix = "absent--"u8.ToArray();
    private static long _sink;

    private static void CachedReads(ReportSettings settings, ReportTable table)
    {
        foreach (var keyCount in new[] { 1_000, 100_000 })
        {
            using var dir = new TempDirectory("minikv-report-cached-");
            var store = BlobStore.OpenAsync(BenchData.Options(dir.Sub("data"), DurabilityMode.Never)).AsTask().GetAwaiter().GetResult();
            try
            {
                var keys = BenchData.IndexKeys(HotPrefix, keyCount);
                BenchData.FillAsync(store, keys, BenchData.Value(100)).GetAwaiter().GetResult();
                foreach (var key in keys)
                {
                    store.Read(key); // fills the cache
                }
                var before = store.GetStats();
                foreach (var threads in new[] { 1, 2 })
                {
                    var runs = RunThreads(settings, threads, (t, stop) => ReadLoop(store, HotPrefix, keyCount, t, stop));
                    var pass = runs.Median >= 11_000_000;
                    table.Add(new ReportRow($"Read, cache hit, 100 B, {keyCount:N0} keys, {threads} thread{(threads == 1 ? "" : "s")}", Fmt.Ops(runs.Median),
                        runs.Spread(Fmt.Ops), "", "", threads == 2 ? "≥ 11,000,000 ops/s" : "(the target is for 2 threads)", threads == 2 ? Fmt.Verdict(pass) : "—",
                        (keyCount == 1_000 ? "hot set fits in L2; " : "index + cache ≈ 25 MB, beyond L2; ") + runs.CpuNote));
                }
                var after = store.GetStats();
                if (after.CacheMisses != before.CacheMisses)
                {
                    throw new InvalidOperationException($"{after.CacheMisses - before.CacheMisses} measured reads missed the cache");
                }
            }
            finally
            {
                store.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
    }

    /// <summary>Reads every one of <paramref name="count"/> index keys in a scattered order (a fixed stride coprime to the count), until stopped.</summary>
    private static long ReadLoop(BlobStore store, byte[] prefix, int count, int thread, StopFlag stop)
    {
        Span<byte> key = stackalloc byte[BenchData.KeyLength];
        var stride = 7919 % count; // 7919 is prime and divides none of the key counts used
        var i = thread * (count / 2);
        long done = 0;
        while (!stop.Stop)
        {
            for (var n = 0; n < 1024; n++)
            {
                BenchData.WriteIndexKey(key, prefix, i);
                if (store.Read(key).Status != StoreStatus.Ok)
                {
                    throw new InvalidOperationException("a preloaded key was not found");
                }
                i += stride;
                i = i >= count ? i - count : i;
            }
            done += 1024;
        }
        return done;
    }

    /// <summary>One discarded warm-up run, then the measured runs.</summary>
    private static Samples RunThreads(ReportSettings settings, int threads, Func<int, StopFlag, long> loop)
    {
        Measure.Threads(threads, settings.WarmupWindow, loop);
        var runs = new Samples();
        for (var run = 0; run < settings.Runs; run++)
        {
            runs.Add(Measure.Threads(threads, settings.Window, loop));
        }
        return runs;
    }

    private static async Task UncachedReadsAsync(ReportSettings settings, ReportTable table)
    {
        const int Keys = 10_000;
        const int ValueBytes = 4096;
        using var dir = new TempDirectory("minikv-report-uncached-");
        await using var store = await BlobStore.OpenAsync(BenchData.Options(dir.Sub("data"), DurabilityMode.Never, readCacheBytes: 0));
        var keys = BenchData.IndexKeys(UncachedPrefix, Keys);
        await BenchData.FillAsync(store, keys, BenchData.Value(ValueBytes));
        var recordBytes = (int)RecordFormat.RecordSize(BenchData.KeyLength, ValueBytes);
        foreach (var threads in new[] { 1, 2 })
        {
            Measure.Threads(threads, settings.WarmupWindow, (t, stop) => ReadLoop(store, UncachedPrefix, Keys, t, stop));
            Samples runs = new(), raws = new();
            for (var run = 0; run < settings.Runs; run++)
            {
                raws.Add(Measure.PreadRate(dir.Path, (long)Keys * recordBytes, recordBytes, threads, settings.BaselineWindow));
                runs.Add(Measure.Threads(threads, settings.Window, (t, stop) => ReadLoop(store, UncachedPrefix, Keys, t, stop)));
                Progress($"[uncached] {threads} thread(s), run {run + 1}: {Fmt.Ops(runs.Rates[^1])}, raw pread {Fmt.Ops(raws.Rates[^1])}");
            }
            table.Add(new ReportRow($"Read, uncached (ReadCacheBytes 0), 4 KiB, {Keys:N0} keys, {threads} thread{(threads == 1 ? "" : "s")}", Fmt.Ops(runs.Median),
                runs.Spread(Fmt.Ops), $"raw {recordBytes}-byte pread, same threads: {Fmt.Ops(raws.Median)}", Fmt.Percent(runs.Median / raws.Median), "report", "—",
                $"= {Fmt.MBps(runs.Median * ValueBytes)} of values; file in the OS page cache; {runs.CpuNote}"));
        }
    }

    private static async Task BloomMissesAsync(ReportSettings settings, ReportTable table, Dataset dataset)
    {
        await dataset.EnsureBuiltAsync(table);
        await using var store = await BlobStore.OpenAsync(dataset.Options);
        foreach (var read in new[] { false, true })
        {
            foreach (var threads in new[] { 1, 2 })
            {
                var runs = RunThreads(settings, threads, (t, stop) => MissLoop(store, read, t, stop));
                table.Add(new ReportRow($"{(read ? "Read" : "Lookup")} of absent keys, store of {Dataset.KeyCount:N0} keys, {threads} thread{(threads == 1 ? "" : "s")}",
                    Fmt.Ops(runs.Median), runs.Spread(Fmt.Ops), "", "", "≥ 20,000,000 ops/s", Fmt.Verdict(runs.Median >= 20_000_000), runs.CpuNote));
            }
        }

        // The raw filter, holding the hashes of the same 1M keys.
        var filter = new BloomFilter(Dataset.KeyCount, 0.01);
        for (var i = 0; i < Dataset.KeyCount; i++)
        {
            filter.Add(BloomFilter.Hash(Dataset.KeyOf(i)));
        }
        var hashes = new ulong[AbsentKeys];
        var falsePositives = 0;
        Span<byte> absent = stackalloc byte[BenchData.KeyLength];
        for (var i = 0; i < AbsentKeys; i++)
        {
            BenchData.WriteIndexKey(absent, AbsentPrefix, i);
            hashes[i] = BloomFilter.Hash(absent);
            falsePositives += filter.MayContain(hashes[i]) ? 1 : 0;
        }
        foreach (var threads in new[] { 1, 2 })
        {
            var runs = RunThreads(settings, threads, (t, stop) => MayContainLoop(filter, hashes, t, stop));
            table.Add(new ReportRow($"BloomFilter.MayContain of absent hashes, 1M keys, {threads} thread{(threads == 1 ? "" : "s")}", Fmt.Ops(runs.Median),
                runs.Spread(Fmt.Ops), "", "", "≥ 20,000,000 ops/s", Fmt.Verdict(runs.Median >= 20_000_000),
                $"{filter.BitCount / 8 / 1024:N0} KiB filter, k = {filter.HashCount}; {100.0 * falsePositives / AbsentKeys:0.00} % false positives; {runs.CpuNote}"));
        }
    }

    /// <summary>Looks up (or reads) keys that were never written, each a new one, until stopped.</summary>
    private static long MissLoop(BlobStore store, bool read, int thread, StopFlag stop)
    {
        Span<byte> key = stackalloc byte[BenchData.KeyLength];
        long done = 0;
        long found = 0;
        var i = (long)thread << 40;
        while (!stop.Stop)
        {
            if (read)
            {
                for (var n = 0; n < 1024; n++)
                {
                    BenchData.WriteIndexKey(key, AbsentPrefix, i++);
                    found += store.Read(key).Status == StoreStatus.Ok ? 1 : 0;
                }
            }
            else
            {
                for (var n = 0; n < 1024; n++)
                {
                    BenchData.WriteIndexKey(key, AbsentPrefix, i++);
                    found += store.Lookup(key, out _) == StoreStatus.Ok ? 1 : 0;
                }
            }
            done += 1024;
        }
        return found == 0 ? done : throw new InvalidOperationException("an absent key was found");
    }

    private static long MayContainLoop(BloomFilter filter, ulong[] hashes, int thread, StopFlag stop)
    {
        long done = 0;
        long maybe = 0;
        var i = thread * 4099;
        while (!stop.Stop)
        {
            for (var n = 0; n < 1024; n++)
            {
                maybe += filter.MayContain(hashes[i++ & (AbsentKeys - 1)]) ? 1 : 0;
            }
            done += 1024;
        }
        Interlocked.Add(ref _sink, maybe);
        return done;
    }
}
