using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using MiniKV.Cluster.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Cluster.Tests;

/// <summary>
/// Growing and shrinking a real cluster (issue #6): a fourth volume joins with no shards, rebalance moves about a
/// quarter of the copies to it while a writer and a reader keep running without an error, then a volume is drained
/// to zero keys and removed. Every key reads back its last acknowledged value at each step.
/// </summary>
public sealed class RebalanceTests(ITestOutputHelper output)
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(3);

    [Fact]
    public async Task A_fourth_volume_takes_a_quarter_of_the_copies_under_load_then_a_drained_volume_is_removed()
    {
        await using var cluster = await TestCluster.StartAsync(output);
        var root = Path.Combine(Path.GetTempPath(), "minikv-rebalance-" + Guid.NewGuid().ToString("N")[..12]);
        var vol4 = NewVolume(cluster, root, "vol-4"); // disposed in finally, before its directory goes
        try
        {
            await cluster.RunAsync(output, async () =>
            {
                var random = TestRandom.Create(output.WriteLine);
                var http = cluster.Http;
                var leader = await cluster.LeaderAsync(TimeSpan.FromSeconds(60));
                var values = new ConcurrentDictionary<string, (int Generation, string Value)>();
                for (var i = 0; i < 300; i++)
                {
                    var key = $"rb/{i:D4}";
                    var value = Value(key, 0, random.Next(100, 4000));
                    await PutAsync(http, leader, key, value);
                    values[key] = (0, value);
                }

                vol4.Start();
                await cluster.WaitReadyAsync([vol4], TestCluster.ReadyTimeout);
                var joined = await VolumeStatusAsync(http, leader, "vol-4");
                Assert.Equal("up", joined!.Value.GetProperty("state").GetString());
                Assert.Equal(0, joined.Value.GetProperty("shards").GetInt32());

                // Writer and reader run through a follower and the leader for the whole rebalance.
                var follower = cluster.Coordinators.First(c => c != leader);
                using var stop = new CancellationTokenSource();
                var errors = new ConcurrentQueue<string>();
                long writes = 0, reads = 0;
                var writer = Task.Run(async () =>
                {
                    var generation = 1;
                    while (!stop.IsCancellationRequested)
                    {
                        var key = $"rb/{generation % 300:D4}";
                        var value = Value(key, generation, 1000);
                        var status = await TryPutAsync(http, generation % 2 == 0 ? leader : follower, key, value);
                        if (status == HttpStatusCode.Created)
                        {
                            values[key] = (generation, value);
                            Interlocked.Increment(ref writes);
                        }
                        else
                        {
                            errors.Enqueue($"PUT {key}: {status}");
                        }
                        generation++;
                    }
                });
                var reader = Task.Run(async () =>
                {
                    var i = 0;
                    while (!stop.IsCancellationRequested)
                    {
                        var key = $"rb/{i++ * 7 % 300:D4}";
                        var before = values[key].Generation;
                        var (status, body) = await TryGetAsync(http, i % 2 == 0 ? leader : follower, key);
                        if (status != HttpStatusCode.OK || Generation(body) < before)
                        {
                            errors.Enqueue($"GET {key}: {status}, generation {(body == null ? "-" : Generation(body))} after {before} was acknowledged");
                        }
                        Interlocked.Increment(ref reads);
                    }
                });

                var result = await RunJobAsync(http, leader, HttpMethod.Post, "/admin/rebalance?dry_run=false&rate=0");
                await stop.CancelAsync();
                await Task.WhenAll(writer, reader);
                output.WriteLine($"rebalance under load: {result}; {writes} writes and {reads} reads meanwhile");
                Assert.True(errors.IsEmpty, string.Join('\n', errors.Take(20)));
                Assert.True(writes > 0 && reads > 0, $"{writes} writes, {reads} reads");
                Assert.True(result.GetProperty("complete").GetBoolean(), result.ToString());
                Assert.InRange(result.GetProperty("replica_slots_moved").GetInt32(), 192 - 40, 192 + 40); // a quarter of 768
                var grown = await VolumeStatusAsync(http, leader, "vol-4");
                Assert.InRange(grown!.Value.GetProperty("shards").GetInt32(), 192 - 40, 192 + 40);
                await AssertAllReadableAsync(http, follower, values);

                // Drain vol-1 to zero keys, stop it, remove it.
                var vol1 = cluster.Volumes[0];
                var drained = await RunJobAsync(http, leader, HttpMethod.Post, "/admin/volumes/vol-1/drain?rate=0");
                output.WriteLine($"drain: {drained}");
                Assert.Equal(0, drained.GetProperty("keys_left").GetInt64());
                JsonElement? seen = null;
                await Eventually.TrueAsync(async () =>
                {
                    seen = await VolumeStatusAsync(http, leader, "vol-1");
                    return seen is { } v && v.GetProperty("state").GetString() == "draining" && v.GetProperty("shards").GetInt32() == 0
                        && v.GetProperty("keys").ValueKind == JsonValueKind.Number && v.GetProperty("keys").GetInt64() == 0;
                }, TimeSpan.FromSeconds(30), () => seen?.ToString() ?? "-", "vol-1 reporting 0 keys");
                await vol1.StopAsync(TimeSpan.FromSeconds(10));
                using (var removed = await http.DeleteAsync(leader.HttpUrl + "/admin/volumes/vol-1"))
                {
                    Assert.True(removed.StatusCode == HttpStatusCode.OK, await removed.Content.ReadAsStringAsync());
                }
                Assert.Null(await VolumeStatusAsync(http, leader, "vol-1"));
                using (var refused = await http.DeleteAsync(leader.HttpUrl + "/admin/volumes/vol-2"))
                {
                    Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
                }
                await AssertAllReadableAsync(http, leader, values);
            });
        }
        finally
        {
            vol4.Dispose();
            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
                // a leftover temp directory is not worth failing the test over
            }
        }
    }

    /// <summary>
    /// The copy rate of an unthrottled rebalance for 1 MiB values (docs/benchmarks.md, "Cluster operations (#6)"):
    /// 3 volumes hold the keys, a fourth joins, and the rebalance's own counters give MB/s and keys/s.
    /// </summary>
    [RebalanceMeasurement]
    public async Task Rebalance_copy_rate_for_1MiB_values()
    {
        var keys = int.Parse(Environment.GetEnvironmentVariable("MINIKV_REBALANCE_KEYS") ?? "400", CultureInfo.InvariantCulture);
        await using var cluster = await TestCluster.StartAsync(output);
        var root = Path.Combine(Path.GetTempPath(), "minikv-rebalance-" + Guid.NewGuid().ToString("N")[..12]);
        var vol4 = NewVolume(cluster, root, "vol-4"); // disposed in finally, before its directory goes
        try
        {
            await cluster.RunAsync(output, async () =>
            {
                var http = cluster.Http;
                var leader = await cluster.LeaderAsync(TimeSpan.FromSeconds(60));
                var next = -1;
                await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
                {
                    for (var i = Interlocked.Increment(ref next); i < keys; i = Interlocked.Increment(ref next))
                    {
                        var key = $"mib/{i:D5}";
                        await PutAsync(http, leader, key, Value(key, 0, 1 << 20));
                    }
                })));
                vol4.Start();
                await cluster.WaitReadyAsync([vol4], TestCluster.ReadyTimeout);
                var result = await RunJobAsync(http, leader, HttpMethod.Post, "/admin/rebalance?dry_run=false&rate=0");
                output.WriteLine($"REBALANCE 1MiB x {keys}: keys_moved {result.GetProperty("keys_moved")}, copies {result.GetProperty("copies")}, " +
                    $"bytes {result.GetProperty("bytes_copied")}, seconds {result.GetProperty("seconds")}, MB/s {result.GetProperty("mb_per_second")}, " +
                    $"keys/s {result.GetProperty("keys_per_second")}");
                Assert.True(result.GetProperty("complete").GetBoolean(), result.ToString());
            });
        }
        finally
        {
            vol4.Dispose();
            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
                // a leftover temp directory is not worth failing the test over
            }
        }
    }

    private static NodeProcess NewVolume(TestCluster cluster, string root, string name)
    {
        var (http, grpc) = (FreePort(), FreePort());
        return new NodeProcess(name, "minikv-volume.dll", http, grpc,
        [
            "serve", "--id", name, "--bind", "127.0.0.1:" + http.ToString(CultureInfo.InvariantCulture),
            "--grpc", "127.0.0.1:" + grpc.ToString(CultureInfo.InvariantCulture),
            "--data", Path.Combine(root, name, "data"), "--wal", Path.Combine(root, name, "wal"),
            "--coordinators", string.Join(',', cluster.Coordinators.Select(c => c.HttpUrl)),
        ]);
    }

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>"key#generation#" padded to the size: the reader can tell which write it sees.</summary>
    private static string Value(string key, int generation, int size)
    {
        var head = $"{key}#{generation}#";
        return head + new string('x', Math.Max(0, size - head.Length));
    }

    private static int Generation(string? body) =>
        body?.Split('#') is [_, var g, ..] && int.TryParse(g, CultureInfo.InvariantCulture, out var n) ? n : -1;

    private static async Task PutAsync(HttpClient http, NodeProcess via, string key, string value)
    {
        HttpStatusCode? status = null;
        await Eventually.TrueAsync(async () => (status = await TryPutAsync(http, via, key, value)) == HttpStatusCode.Created,
            TimeSpan.FromSeconds(60), () => status?.ToString() ?? "-", $"PUT {key}");
    }

    private static async Task<HttpStatusCode?> TryPutAsync(HttpClient http, NodeProcess via, string key, string value)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            using var response = await http.PutAsync(via.HttpUrl + "/kv/" + key, new StringContent(value), cts.Token);
            return response.StatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            return null;
        }
    }

    private static async Task<(HttpStatusCode? Status, string? Body)> TryGetAsync(HttpClient http, NodeProcess via, string key)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            using var response = await http.GetAsync(via.HttpUrl + "/kv/" + key, cts.Token);
            return (response.StatusCode, await response.Content.ReadAsStringAsync(cts.Token));
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            return (null, e.Message);
        }
    }

    private static async Task AssertAllReadableAsync(HttpClient http, NodeProcess via, ConcurrentDictionary<string, (int Generation, string Value)> values)
    {
        foreach (var (key, (_, value)) in values)
        {
            var (status, body) = await TryGetAsync(http, via, key);
            Assert.True(status == HttpStatusCode.OK && body == value, $"GET {key} via {via.Name}: {status}, {body?[..Math.Min(body.Length, 40)]}");
        }
    }

    private static async Task<JsonElement?> VolumeStatusAsync(HttpClient http, NodeProcess via, string id)
    {
        using var doc = JsonDocument.Parse(await http.GetStringAsync(via.HttpUrl + "/admin/status"));
        foreach (var v in doc.RootElement.GetProperty("volumes").EnumerateArray())
        {
            if (v.GetProperty("id").GetString() == id)
            {
                return v.Clone();
            }
        }
        return null;
    }

    private static async Task<JsonElement> RunJobAsync(HttpClient http, NodeProcess via, HttpMethod method, string path)
    {
        using var started = await http.SendAsync(new HttpRequestMessage(method, via.HttpUrl + path));
        var body = await started.Content.ReadAsStringAsync();
        Assert.True(started.StatusCode == HttpStatusCode.Accepted, $"{method} {path}: {started.StatusCode} {body}");
        var id = JsonDocument.Parse(body).RootElement.GetProperty("job").GetString()!;
        JsonElement job = default;
        await Eventually.TrueAsync(async () =>
        {
            using var doc = JsonDocument.Parse(await http.GetStringAsync(via.HttpUrl + "/admin/jobs/" + id));
            job = doc.RootElement.Clone();
            return job.GetProperty("state").GetString() != "running";
        }, JobTimeout, () => job.ToString(), $"job {id} ({path})");
        Assert.True(job.GetProperty("state").GetString() == "done", job.ToString());
        return job.GetProperty("result");
    }
}

/// <summary>A fact that runs only with MINIKV_HEAVY=1 (long measurements); skipped, and said so, otherwise.</summary>
public sealed class RebalanceMeasurementAttribute : FactAttribute
{
    public RebalanceMeasurementAttribute()
    {
        if (!TestRandom.Heavy)
        {
            Skip = "a measurement: set MINIKV_HEAVY=1 to run it";
        }
    }
}
