using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using MiniKV.Cluster.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Cluster.Tests;

/// <summary>
/// Issue #6 measurement (runs only with MINIKV_HEAVY=1): repair copy rate of 1 MiB values after a volume is wiped,
/// unthrottled (manual repair) and throttled (automatic repair at --repair-rate), and the p99 of small foreground
/// GETs and PUTs meanwhile, against a baseline without repair. Prints a table row per phase.
/// </summary>
public sealed class RepairBenchTests(ITestOutputHelper output)
{
    /// <summary>MINIKV_REPAIR_KEYS values of 1 MiB (default 200).</summary>
    private static readonly int Keys = int.TryParse(Environment.GetEnvironmentVariable("MINIKV_REPAIR_KEYS"), out var n) && n > 0 ? n : 200;
    private const int ValueSize = 1 << 20;

    [Fact]
    public async Task Repair_copy_rate_and_foreground_latency()
    {
        if (!TestRandom.Heavy)
        {
            output.WriteLine("skipped: set MINIKV_HEAVY=1 to measure");
            return;
        }
        // Unthrottled: automatic repair off, manual repair copies 16 keys at a time.
        await using (var cluster = await TestCluster.StartAsync(output, coordinatorFlags: ["--repair-rate", "0", "--orphan-grace", "1s"]))
        {
            await cluster.RunAsync(output, async () =>
            {
                var via = await cluster.LeaderAsync(TimeSpan.FromSeconds(60));
                await FillAsync(cluster, via);
                var baseline = await ForegroundAsync(cluster.Http, via, TimeSpan.FromSeconds(10), null);
                Row("no repair (baseline)", baseline, null);
                await WipeAsync(cluster, cluster.Volumes[2]);
                var repair = Task.Run(() => RepairTests.RunJobAsync(cluster.Http, via, "admin/repair?dry_run=false"));
                var during = await ForegroundAsync(cluster.Http, via, TimeSpan.FromMinutes(10), repair);
                var job = await repair;
                Row("manual repair, unthrottled", during, job.GetProperty("result"));
            });
        }
        // Throttled: the automatic repair at 10 keys/s.
        await using (var cluster = await TestCluster.StartAsync(output, coordinatorFlags: ["--repair-rate", "10", "--repair-interval", "1s", "--orphan-grace", "1s"]))
        {
            await cluster.RunAsync(output, async () =>
            {
                var via = await cluster.LeaderAsync(TimeSpan.FromSeconds(60));
                await FillAsync(cluster, via);
                await WipeAsync(cluster, cluster.Volumes[2]);
                var started = Stopwatch.StartNew();
                var healed = Task.Run(async () =>
                {
                    JsonElement verify = default;
                    await Eventually.TrueAsync(async () =>
                    {
                        verify = await RepairTests.RunJobAsync(cluster.Http, via, "admin/verify");
                        return verify.GetProperty("result").GetProperty("healthy").GetBoolean();
                    }, TimeSpan.FromMinutes(10), () => verify.ToString(), "healed by the automatic repair");
                    return started.Elapsed;
                });
                var during = await ForegroundAsync(cluster.Http, via, TimeSpan.FromMinutes(10), healed);
                var elapsed = await healed;
                output.WriteLine($"automatic repair at 10 keys/s healed {Keys} keys of 1 MiB in {elapsed.TotalSeconds:F1} s ({Keys / elapsed.TotalSeconds:F1} keys/s, {Keys * (double)ValueSize / 1e6 / elapsed.TotalSeconds:F1} MB/s)");
                Row("automatic repair, --repair-rate 10", during, null);
            });
        }
    }

    private void Row(string phase, (int Count, double P50, double P99) latency, JsonElement? result)
    {
        var rate = result is { } r
            ? $"{r.GetProperty("copy_mb_per_s").GetDouble():F1} MB/s, {r.GetProperty("keys_per_s").GetDouble():F1} keys/s, {r.GetProperty("copies_made").GetInt64()} copies in {r.GetProperty("seconds").GetDouble():F1} s"
            : "-";
        output.WriteLine($"| {phase} | {rate} | {latency.Count} | {latency.P50:F1} | {latency.P99:F1} |");
    }

    private static async Task FillAsync(TestCluster cluster, NodeProcess via)
    {
        var random = new Random(6);
        var value = new byte[ValueSize];
        await Parallel.ForEachAsync(Enumerable.Range(0, Keys), new ParallelOptions { MaxDegreeOfParallelism = 4 }, async (i, _) =>
        {
            byte[] copy;
            lock (random)
            {
                random.NextBytes(value);
                copy = (byte[])value.Clone();
            }
            using var r = await ApiTests.PutRetryingUnavailableAsync(cluster.Http, via, "big/" + i.ToString("D5", CultureInfo.InvariantCulture), copy);
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        });
    }

    private static async Task WipeAsync(TestCluster cluster, NodeProcess volume)
    {
        volume.Kill();
        foreach (var dir in new[] { "data", "wal" })
        {
            var path = Path.Combine(cluster.Root, volume.Name, dir);
            if (Directory.Exists(path))
            {
                Directory.Delete(path, recursive: true);
            }
        }
        volume.Start();
        await cluster.WaitReadyAsync([volume], TestCluster.ReadyTimeout);
    }

    /// <summary>One client alternating 4 KiB PUTs and GETs until <paramref name="until"/> ends (or for <paramref name="duration"/>); latency percentiles in ms.</summary>
    private static async Task<(int Count, double P50, double P99)> ForegroundAsync(HttpClient http, NodeProcess via, TimeSpan duration, Task? until)
    {
        var latencies = new List<double>();
        var value = new byte[4096];
        var watch = Stopwatch.StartNew();
        var i = 0;
        while (watch.Elapsed < duration && (until == null || !until.IsCompleted))
        {
            var key = "fg/" + (i++ % 100).ToString("D3", CultureInfo.InvariantCulture);
            var started = Stopwatch.GetTimestamp();
            using (var put = await ApiTests.PutAsync(http, via, key, value))
            {
                latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
            started = Stopwatch.GetTimestamp();
            using (var get = await http.GetAsync(ApiTests.Url(via, key)))
            {
                await get.Content.ReadAsByteArrayAsync();
                latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
        }
        latencies.Sort();
        return latencies.Count == 0 ? (0, 0, 0) : (latencies.Count, latencies[latencies.Count / 2], latencies[Math.Min(latencies.Count - 1, (int)(latencies.Count * 0.99))]);
    }
}
