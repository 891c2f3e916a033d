using System.Diagnostics;
using MiniKV.Benchmarks.Support;
using MiniKV.Storage;
using MiniKV.Storage.Segments;

namespace MiniKV.Benchmarks.Report;

// Writes: small puts in durability Never (one caller and several), group commit in durability Always
// against the raw fsync rate, and a 64 MiB streamed value against the raw sequential write rate.
public static partial class StorageReport
{
    private const int PutKeySpace = 65_536;
    private const int DurableWriters = 64;
    private const long BlobBytes = 64L << 20;

    private static async Task PutsAsync(ReportSettings settings, ReportTable table)
    {
        using var dir = new TempDirectory("minikv-report-put-");
        await using var store = await BlobStore.OpenAsync(BenchData.Options(dir.Sub("data"), DurabilityMode.Never));
        var keys = BenchData.Keys("put-", PutKeySpace);
        var value = BenchData.Value(100);
        await BenchData.FillAsync(store, keys, value); // every measured put below overwrites a key
        var recordBytes = (int)RecordFormat.RecordSize(BenchData.KeyLength, value.Length);
        foreach (var callers in new[] { 1, 4, 16, 64 })
        {
            await RunPutsAsync(store, keys, value, callers, settings.WarmupWindow);
            var runs = new Samples();
            var raws = new List<double>();
            for (var run = 0; run < settings.Runs; run++)
            {
                if (callers == 1)
                {
                    raws.Add(Measure.AppendRate(dir.Path, recordBytes, settings.BaselineWindow));
                }
                var (ops, elapsed, cores) = await RunPutsAsync(store, keys, value, callers, settings.Window);
                runs.Add(new Sample(ops / elapsed.TotalSeconds, cores));
                Progress($"[put Never] {callers} caller(s), run {run + 1}: {Fmt.Ops(runs.Rates[^1])}");
            }
            var median = runs.Median;
            var baseline = callers == 1 ? $"raw {recordBytes}-byte write() per record, 1 thread: {Fmt.Ops(Measure.Median(raws))}" : "";
            var ratio = callers == 1 ? Fmt.Percent(median / Measure.Median(raws)) : "";
            table.Add(new ReportRow($"put 100 B, Never, {callers} caller{(callers == 1 ? "" : "s")} awaiting in a loop",
                Fmt.Ops(median), runs.Spread(Fmt.Ops), baseline, ratio, "≥ 500,000 ops/s", Fmt.Verdict(median >= 500_000),
                $"overwrites of a {PutKeySpace:N0}-key set; {runs.CpuNote}"));
        }
    }

    private static Task<(long Operations, TimeSpan Elapsed, double CoresBusy)> RunPutsAsync(BlobStore store, byte[][] keys, byte[] value, int callers, TimeSpan window) =>
        Measure.TasksAsync(callers, window, async (index, stop) =>
        {
            long done = 0;
            var next = index * 7919;
            while (!stop.Stop)
            {
                var result = await store.PutAsync(keys[next++ & (PutKeySpace - 1)], value);
                if (!result.IsOk)
                {
                    throw new InvalidOperationException($"put failed: {result.Status}");
                }
                done++;
            }
            return done;
        });

    private static async Task DurablePutsAsync(ReportSettings settings, ReportTable table)
    {
        foreach (var withWal in new[] { false, true })
        {
            using var dir = new TempDirectory("minikv-report-durable-");
            var data = dir.Sub("data");
            await using var store = await BlobStore.OpenAsync(BenchData.Options(data, DurabilityMode.Always, walDirectory: withWal ? dir.Sub("wal") : null));
            var keys = BenchData.Keys("dur-", PutKeySpace);
            var value = BenchData.Value(100);
            await RunPutsAsync(store, keys, value, DurableWriters, settings.WarmupWindow);
            List<double> rates = [], raws = [], perFsync = [];
            for (var run = 0; run < settings.Runs; run++)
            {
                raws.Add(Measure.FsyncRate(data, settings.BaselineWindow));
                var before = store.GetStats().Fsyncs;
                var (ops, elapsed, _) = await RunPutsAsync(store, keys, value, DurableWriters, settings.DurableWindow);
                var fsyncs = store.GetStats().Fsyncs - before;
                rates.Add(ops / elapsed.TotalSeconds);
                perFsync.Add(ops / (double)Math.Max(1, fsyncs));
                Progress($"[put Always{(withWal ? " +WAL" : "")}] run {run + 1}: {Fmt.Ops(rates[^1])}, raw fsync {Fmt.Count(raws[^1])}/s, {perFsync[^1]:N1} writes/fsync");
            }
            var label = withWal ? "with WalDirectory" : "no WAL";
            var rate = Measure.Median(rates);
            var raw = Measure.Median(raws);
            var ratio = new List<double>();
            for (var i = 0; i < rates.Count; i++)
            {
                ratio.Add(rates[i] / raws[i]);
            }
            table.Add(new ReportRow($"put 100 B, Always, {DurableWriters} writers, {label}", Fmt.Ops(rate), Fmt.Spread(rates, Fmt.Ops),
                $"raw 4 KiB append+fsync: {Fmt.Count(raw)}/s", Fmt.Ratio(Measure.Median(ratio)) + " raw", "report", "—",
                "ratio: store puts/s over raw fsyncs/s, per run"));
            var writes = Measure.Median(perFsync);
            table.Add(new ReportRow($"writes per fsync, Always, {DurableWriters} writers, {label}", Fmt.Count(writes, 1), Fmt.Spread(perFsync, v => Fmt.Count(v, 1)),
                "", "", "≥ 20", Fmt.Verdict(writes >= 20), "puts ÷ StoreStats.Fsyncs delta"));
        }
    }

    private static async Task SequentialBlobAsync(ReportSettings settings, ReportTable table)
    {
        using var dir = new TempDirectory("minikv-report-blob-");
        var data = dir.Sub("data");
        await using var store = await BlobStore.OpenAsync(BenchData.Options(data, DurabilityMode.Always));
        var source = BenchData.Value((int)BlobBytes, seed: 5);
        List<double> stores = [], raws = [], ratios = [];
        for (var run = -1; run < settings.Runs; run++)
        {
            // Alternate which goes first, so that neither always follows the other's writeback.
            var rawPath = Path.Combine(data, $"raw-sequential-{run + 1}.bench");
            var raw = run % 2 == 0 ? Measure.SequentialWriteRate(rawPath, BlobBytes) : 0;
            var clock = Stopwatch.StartNew();
            using (var stream = new MemoryStream(source, writable: false))
            {
                var result = await store.PutAsync(BenchData.Key("blo-", run + 1), stream, BlobBytes);
                if (!result.IsOk)
                {
                    throw new InvalidOperationException($"blob put failed: {result.Status}");
                }
            }
            var rate = BlobBytes / clock.Elapsed.TotalSeconds;
            if (run % 2 != 0)
            {
                raw = Measure.SequentialWriteRate(rawPath, BlobBytes);
            }
            if (run < 0)
            {
                continue; // warm-up
            }
            raws.Add(raw);
            stores.Add(rate);
            ratios.Add(rate / raw);
            Progress($"[blob 64 MiB Always] run {run + 1}: store {Fmt.MBps(rate)}, raw {Fmt.MBps(raw)}");
        }
        var ratio = Measure.Median(ratios);
        table.Add(new ReportRow("PutAsync(Stream) of a 64 MiB value, Always", Fmt.MBps(Measure.Median(stores)), Fmt.Spread(stores, Fmt.MBps),
            $"raw 1 MiB writes + fsync: {Fmt.MBps(Measure.Median(raws))}", Fmt.Percent(ratio), "≥ 70 % of raw", Fmt.Verdict(ratio >= 0.70),
            "ratio per run; raw and store take turns going first"));
    }
}
