using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using MiniKV.Cluster.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Cluster.Tests;

/// <summary>
/// Issue #6: verify, repair and the automatic repair against real processes — a volume killed during writes and
/// brought back, a flipped byte in a segment file, a wiped data directory.
/// </summary>
public sealed class RepairTests(ITestOutputHelper output)
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task Automatic_repair_brings_every_key_back_to_R_copies_after_a_volume_missed_writes()
    {
        await using var cluster = await TestCluster.StartAsync(output, coordinatorFlags: ["--repair-interval", "1s", "--repair-rate", "1000", "--orphan-grace", "2s"]);
        await cluster.RunAsync(output, async () =>
        {
            var random = TestRandom.Create(output.WriteLine);
            var http = cluster.Http;
            var via = cluster.Coordinators[0];
            var acknowledged = new ConcurrentDictionary<string, byte[]>();
            await WriteAsync(http, via, "before", 20, random, acknowledged);

            using var stop = new CancellationTokenSource();
            var during = 0;
            var writer = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    var key = "during/" + Interlocked.Increment(ref during).ToString("D5", CultureInfo.InvariantCulture);
                    byte[] value;
                    lock (random)
                    {
                        value = TestRandom.Bytes(random, random.Next(1, 30_000));
                    }
                    try
                    {
                        using var r = await ApiTests.PutRetryingUnavailableAsync(http, via, key, value);
                        if (r.StatusCode == HttpStatusCode.Created)
                        {
                            acknowledged[key] = value;
                        }
                    }
                    catch (HttpRequestException)
                    {
                    }
                }
            });
            var volume = cluster.Volumes[2];
            await Eventually.TrueAsync(() => acknowledged.Count >= 25, TimeSpan.FromSeconds(60), () => $"{acknowledged.Count} writes", "writes before the kill");
            volume.Kill();
            var atKill = acknowledged.Count;
            await Eventually.TrueAsync(() => acknowledged.Count >= atKill + 20, TimeSpan.FromSeconds(60), () => $"{acknowledged.Count - atKill} writes", "writes while a volume is down");
            volume.Start();
            await cluster.WaitReadyAsync([volume], TestCluster.ReadyTimeout);
            await Task.Delay(500); // a few writes with the volume back
            await stop.CancelAsync();
            await writer;
            output.WriteLine($"{acknowledged.Count} writes acknowledged, {acknowledged.Count - atKill} after the kill");

            JsonElement last = default;
            await Eventually.TrueAsync(async () =>
            {
                last = await RunJobAsync(http, via, "admin/verify?deep=true");
                // A job that ended without a result (e.g. failed/leader_changed while leadership settles) is run again;
                // its body is what a timeout prints.
                return last.TryGetProperty("result", out var result) && result.GetProperty("healthy").GetBoolean();
            }, TimeSpan.FromSeconds(90), () => last.ToString(), "verify --deep healthy after the automatic repair");
            Assert.True(last.GetProperty("result").GetProperty("keys").GetInt64() >= acknowledged.Count);
            await AssertAllReadableAsync(http, via, acknowledged);
        });
    }

    [Fact]
    public async Task Verify_finds_a_flipped_byte_and_a_wiped_volume_and_repair_fixes_both()
    {
        await using var cluster = await TestCluster.StartAsync(output, coordinatorFlags: ["--repair-rate", "0", "--orphan-grace", "1s"]);
        await cluster.RunAsync(output, async () =>
        {
            var random = TestRandom.Create(output.WriteLine);
            var http = cluster.Http;
            var via = cluster.Coordinators[1];
            var acknowledged = new ConcurrentDictionary<string, byte[]>();
            await WriteAsync(http, via, "k", 30, random, acknowledged);
            JsonElement verify = default;
            await Eventually.TrueAsync(async () =>
            {
                verify = await RunJobAsync(http, via, "admin/verify?deep=true");
                return verify.GetProperty("result").GetProperty("healthy").GetBoolean();
            }, TimeSpan.FromSeconds(30), () => verify.ToString(), "a healthy cluster after the writes");

            // Flip one byte inside a value in vol-1's segment files.
            var victim = "k/00007";
            var marker = Encoding.ASCII.GetBytes("MARK-" + victim);
            var flipped = FlipByteAfter(Path.Combine(cluster.Root, "vol-1", "data"), marker, 64);
            output.WriteLine("flipped a byte in " + flipped);
            using (var get = await http.GetAsync(ApiTests.Url(via, victim)))
            {
                Assert.Equal(HttpStatusCode.OK, get.StatusCode);
                Assert.Equal(acknowledged[victim], await get.Content.ReadAsByteArrayAsync());
            }
            verify = await RunJobAsync(http, via, "admin/verify?deep=true");
            output.WriteLine(verify.ToString());
            Assert.False(verify.GetProperty("result").GetProperty("healthy").GetBoolean());
            Assert.True(Problem(verify, "corrupt_copies") >= 1);

            var plan = await RunJobAsync(http, via, "admin/repair?dry_run=true");
            output.WriteLine(plan.ToString());
            Assert.True(plan.GetProperty("result").GetProperty("keys_to_repair").GetInt64() >= 1);
            var repaired = await RunJobAsync(http, via, "admin/repair?dry_run=false");
            output.WriteLine(repaired.ToString());
            Assert.Equal("done", repaired.GetProperty("state").GetString());
            Assert.True(repaired.GetProperty("result").GetProperty("copies_made").GetInt64() >= 1);
            verify = await RunJobAsync(http, via, "admin/verify?deep=true");
            Assert.True(verify.GetProperty("result").GetProperty("healthy").GetBoolean(), verify.ToString());

            // Wipe vol-2's data and write-ahead log; it comes back empty.
            var wiped = cluster.Volumes[1];
            wiped.Kill();
            foreach (var dir in new[] { "data", "wal" })
            {
                var path = Path.Combine(cluster.Root, wiped.Name, dir);
                if (Directory.Exists(path))
                {
                    Directory.Delete(path, recursive: true);
                }
            }
            wiped.Start();
            await cluster.WaitReadyAsync([wiped], TestCluster.ReadyTimeout);
            await Eventually.TrueAsync(async () =>
            {
                verify = await RunJobAsync(http, via, "admin/verify");
                return Problem(verify, "missing_copies") >= acknowledged.Count;
            }, TimeSpan.FromSeconds(30), () => verify.ToString(), "verify sees the wiped volume's copies missing");
            Assert.False(verify.GetProperty("result").GetProperty("healthy").GetBoolean());
            repaired = await RunJobAsync(http, via, "admin/repair?dry_run=false");
            output.WriteLine(repaired.ToString());
            Assert.True(repaired.GetProperty("result").GetProperty("copies_made").GetInt64() >= acknowledged.Count);
            verify = await RunJobAsync(http, via, "admin/verify?deep=true");
            Assert.True(verify.GetProperty("result").GetProperty("healthy").GetBoolean(), verify.ToString());
            await AssertAllReadableAsync(http, via, acknowledged);

            using var unknown = await http.GetAsync(via.HttpUrl + "/admin/jobs/999999-1");
            Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        });
    }

    private static long Problem(JsonElement job, string name) => job.GetProperty("result").GetProperty("problems").GetProperty(name).GetInt64();

    private static async Task WriteAsync(HttpClient http, NodeProcess via, string prefix, int count, Random random, ConcurrentDictionary<string, byte[]> acknowledged)
    {
        for (var i = 0; i < count; i++)
        {
            var key = $"{prefix}/{i:D5}";
            // A recognizable prefix lets a test find the value's bytes in a segment file.
            var value = Encoding.ASCII.GetBytes("MARK-" + key).Concat(TestRandom.Bytes(random, random.Next(200, 20_000))).ToArray();
            using var r = await ApiTests.PutRetryingUnavailableAsync(http, via, key, value);
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
            acknowledged[key] = value;
        }
    }

    private static async Task AssertAllReadableAsync(HttpClient http, NodeProcess via, ConcurrentDictionary<string, byte[]> acknowledged)
    {
        foreach (var (key, value) in acknowledged)
        {
            // 503 means "retry" (leadership moving), never "lost"; it is retried for a bounded time like a client would.
            HttpStatusCode status = 0;
            byte[] body = [];
            await Eventually.TrueAsync(async () =>
            {
                using var get = await http.GetAsync(ApiTests.Url(via, key));
                status = get.StatusCode;
                body = await get.Content.ReadAsByteArrayAsync();
                return status != HttpStatusCode.ServiceUnavailable;
            }, TimeSpan.FromSeconds(30), () => $"GET {key}: {status}", "an answer other than 503");
            Assert.True(status == HttpStatusCode.OK, $"GET {key}: {status}");
            Assert.True(value.AsSpan().SequenceEqual(body), $"GET {key}: wrong bytes");
        }
    }

    /// <summary>Starts an admin job, follows it to its end, and returns the final job JSON.</summary>
    internal static async Task<JsonElement> RunJobAsync(HttpClient http, NodeProcess via, string pathAndQuery)
    {
        string id;
        var deadline = DateTime.UtcNow + JobTimeout;
        while (true)
        {
            using var started = await http.PostAsync(via.HttpUrl + "/" + pathAndQuery, null);
            var body = await started.Content.ReadAsStringAsync();
            if (started.StatusCode == HttpStatusCode.ServiceUnavailable && DateTime.UtcNow < deadline)
            {
                await Task.Delay(300);
                continue;
            }
            Assert.True(started.StatusCode == HttpStatusCode.Accepted, $"POST /{pathAndQuery}: {started.StatusCode} {body}");
            using var json = JsonDocument.Parse(body);
            id = json.RootElement.GetProperty("job").GetString()!;
            break;
        }
        while (true)
        {
            using var status = await http.GetAsync(via.HttpUrl + "/admin/jobs/" + id);
            var body = await status.Content.ReadAsStringAsync();
            Assert.True(status.StatusCode == HttpStatusCode.OK, $"GET /admin/jobs/{id}: {status.StatusCode} {body}");
            using var json = JsonDocument.Parse(body);
            var state = json.RootElement.GetProperty("state").GetString();
            if (state != "running")
            {
                return json.RootElement.Clone();
            }
            Assert.True(DateTime.UtcNow < deadline, $"job {id} still running: {body}");
            await Task.Delay(200);
        }
    }

    /// <summary>Flips the byte <paramref name="offset"/> bytes after the first occurrence of <paramref name="marker"/> in any file under <paramref name="root"/>.</summary>
    private static string FlipByteAfter(string root, byte[] marker, int offset)
    {
        foreach (var file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories))
        {
            var bytes = File.ReadAllBytes(file);
            var at = bytes.AsSpan().IndexOf(marker);
            if (at < 0)
            {
                continue;
            }
            using var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            stream.Position = at + offset;
            var b = stream.ReadByte();
            stream.Position = at + offset;
            stream.WriteByte((byte)(b ^ 0x5a));
            stream.Flush(flushToDisk: true);
            return file;
        }
        throw new InvalidOperationException($"no file under {root} holds the marker");
    }
}
