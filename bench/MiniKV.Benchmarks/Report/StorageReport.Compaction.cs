using System.Diagnostics;
using MiniKV.Benchmarks.Support;
using MiniKV.Storage;

namespace MiniKV.Benchmarks.Report;

// Compaction: 8 MiB log segments, a third of all records dead (concentrated in the oldest segments), and one
// CompactAsync(force) run while the store is idle. A run picks the deadest sealed segments and stops at about
// one segment's worth of live output, so this times one such run. Every key is read back afterwards.
public static partial class StorageReport
{
    private static readonly byte[] CompactionPrefix = "cmp-key-"u8.ToArray();

    private static async Task CompactionAsync(ReportSettings settings, ReportTable table)
    {
        const int Keys = 200_000;
        List<double> seconds = [], inputRates = [], reclaimed = [];
        CompactionResult? last = null;
        for (var run = -1; run < settings.Runs; run++)
        {
            using var dir = new TempDirectory("minikv-report-compact-");
            var options = new StoreOptions
            {
                DataDirectory = dir.Sub("data"),
                Durability = DurabilityMode.Never,
                SegmentSize = 8 << 20,
                CompactionInterval = TimeSpan.Zero,
                SnapshotInterval = TimeSpan.Zero,
            };
            await using var store = await BlobStore.OpenAsync(options);
            var keys = BenchData.IndexKeys(CompactionPrefix, Keys);
            byte[] first = BenchData.Value(100, seed: 1), second = BenchData.Value(100, seed: 2);
            await BenchData.FillAsync(store, keys, first);
            await BenchData.FillAsync(store, keys[..(Keys / 2)], second); // the first copies of half the keys die
            var clock = Stopwatch.StartNew();
            var result = await store.CompactAsync(force: true);
            var elapsed = clock.Elapsed.TotalSeconds;
            for (var i = 0; i < Keys; i++)
            {
                var read = store.Read(keys[i]);
                if (read.Status != StoreStatus.Ok || !read.Value.Span.SequenceEqual(i < Keys / 2 ? second : first))
                {
                    throw new InvalidOperationException($"key {i} reads {read.Status} after compaction");
                }
            }
            if (run < 0)
            {
                continue;
            }
            last = result;
            seconds.Add(elapsed);
            inputRates.Add(result.BytesBefore / elapsed);
            reclaimed.Add(result.BytesBefore - result.BytesAfter);
            Progress($"[compaction] run {run + 1}: {result.SegmentsCompacted} segments, {result.BytesBefore / 1e6:N1} → {result.BytesAfter / 1e6:N1} MB in {elapsed * 1000:N0} ms");
        }
        var median = Measure.Median(inputRates);
        table.Add(new ReportRow($"one CompactAsync(force) run, 8 MiB segments, {Keys:N0} keys, 1/3 of records dead", Fmt.MBps(median) + " of segments",
            Fmt.Spread(inputRates, Fmt.MBps), "", "", "report", "—",
            $"{last!.SegmentsCompacted} segments, {last.BytesBefore / 1e6:N1} → {last.BytesAfter / 1e6:N1} MB, {last.RecordsCopied:N0} records copied; " +
            $"median {Fmt.Ms(Measure.Median(seconds) * 1000)}; every key read back afterwards"));
    }
}
