using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using MiniKV.Cluster.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Cluster.Tests;

/// <summary>
/// SIGKILL at each step of the write path, placed exactly by failpoints (MINIKV_FAILPOINTS, docs/testing.md): a
/// volume between Prepare and Commit; the leader after Prepare, after proposing (followers frozen so the entry cannot
/// commit) and after the commit point. After each: acknowledged writes read back with their bytes, the victim write is
/// all or nothing, and every volume's prepared transactions get resolved. Then a client vanishing mid-upload, and the
/// error answers that need a cluster in a particular state (chunked body over the limit, no leader).
/// </summary>
public sealed class WritePathFailureTests(ITestOutputHelper output) : IDisposable
{
    private const long MaxValueSize = 8L << 20;
    private static readonly TimeSpan Recovery = TimeSpan.FromSeconds(60);
    private readonly string _releaseDirectory = Directory.CreateTempSubdirectory("minikv-failpoints-").FullName;

    private string ReleaseFile => Path.Combine(_releaseDirectory, "release-proposed");

    [Fact]
    public async Task A_kill_at_each_step_of_the_write_path_loses_no_acknowledged_write_and_shows_no_partial_value()
    {
        await using var cluster = await TestCluster.StartAsync(output, maxValueSize: "8MiB", configure: node =>
        {
            if (node.Name.StartsWith("coord", StringComparison.Ordinal))
            {
                node.ExtraEnvironment["MINIKV_FAILPOINTS"] =
                    "write.after-prepare=kill@fp/after-prepare;" +
                    $"write.after-prepare=wait({ReleaseFile})@fp/proposed;" +
                    "write.after-commit-point=kill@fp/commit-point";
            }
            else
            {
                // Volumes ask about a prepare they hold after half of this (2 s) instead of 30 s.
                node.ExtraEnvironment["MINIKV_PREPARED_EXPIRY"] = "4s";
                if (node.Name == "vol-1")
                {
                    node.ExtraEnvironment["MINIKV_FAILPOINTS"] = "volume.before-commit=kill";
                }
            }
        });
        await cluster.RunAsync(output, async () =>
        {
            var random = TestRandom.Create(output.WriteLine);
            var acknowledged = new Dictionary<string, byte[]>(StringComparer.Ordinal);

            // (a) vol-1 dies on the first Commit it receives: the write is acknowledged on the other two, and vol-1,
            // restarted, learns the outcome from the leader and serves the value.
            var vol1 = cluster.Volumes[0];
            var value = TestRandom.Bytes(random, 30_000);
            await WaitAllVolumesUpAsync(cluster);
            using (var put = await ApiTests.PutRetryingUnavailableAsync(cluster.Http, cluster.Coordinators[1], "fp/volume-commit", value))
            {
                var text = await put.Content.ReadAsStringAsync();
                Assert.True(put.StatusCode == HttpStatusCode.Created, $"PUT with vol-1 dying at Commit: {(int)put.StatusCode} {text}");
                output.WriteLine("(a) PUT: " + text);
                Assert.Contains("vol-1", JsonDocument.Parse(text).RootElement.GetProperty("replicas").EnumerateArray().Select(r => r.GetString()));
            }
            acknowledged["fp/volume-commit"] = value;
            await Eventually.TrueAsync(() => !vol1.IsRunning, Recovery, () => "still running", "vol-1 to kill itself at its Commit");
            Assert.True(vol1.Printed("failpoint volume.before-commit hit"), "vol-1 exited without passing its failpoint");
            await AssertReadableAsync(cluster, cluster.Coordinators, acknowledged);
            vol1.ExtraEnvironment.Remove("MINIKV_FAILPOINTS");
            vol1.Start();
            await cluster.WaitReadyAsync([vol1], TestCluster.ReadyTimeout);
            await AssertNoPreparedAsync(cluster);
            using (var direct = await cluster.Http.GetAsync(vol1.HttpUrl + "/blob/fp%2Fvolume-commit"))
            {
                Assert.True(direct.StatusCode == HttpStatusCode.OK, $"vol-1's own copy after restart: {(int)direct.StatusCode} {await direct.Content.ReadAsStringAsync()}");
                Assert.Equal(value, await direct.Content.ReadAsByteArrayAsync());
            }
            output.WriteLine("(a) volume killed between Prepare and Commit: acknowledged, and its copy committed after restart");

            for (var i = 0; i < 6; i++)
            {
                await PutAckedAsync(cluster, cluster.Coordinators[i % 3], $"acked/{i}", TestRandom.Bytes(random, random.Next(1, 50_000)), acknowledged);
            }

            await WaitAllVolumesUpAsync(cluster);
            // (b1) the leader dies after every volume staged the value, before proposing: nothing is written.
            var leader = await cluster.LeaderAsync(Recovery);
            await PutIntoDyingLeaderAsync(cluster, leader, "fp/after-prepare", TestRandom.Bytes(random, 20_000));
            Assert.True(leader.Printed("failpoint write.after-prepare hit: kill key=fp/after-prepare"), $"{leader.Name} died elsewhere");
            // Straight after the leader died a follower knows no leader yet: it waits for the election (up to 2 s)
            // instead of failing at once, and if that is not enough it says 503 with Retry-After.
            var asked = cluster.Coordinators.First(c => c.IsRunning);
            using (var early = await cluster.Http.GetAsync(ApiTests.Url(asked, "acked/0")))
            {
                output.WriteLine($"GET via {asked.Name} right after the leader died: {(int)early.StatusCode} Retry-After {early.Headers.RetryAfter}");
                Assert.True(early.StatusCode == HttpStatusCode.OK || (early.StatusCode == HttpStatusCode.ServiceUnavailable && early.Headers.RetryAfter != null),
                    $"GET right after the leader died: {(int)early.StatusCode} {await early.Content.ReadAsStringAsync()}");
            }
            await AssertAbsentAsync(cluster, "fp/after-prepare");
            await AssertNoPreparedAsync(cluster);
            await RestartAsync(cluster, leader);
            await AssertAbsentAsync(cluster, "fp/after-prepare");
            await AssertReadableAsync(cluster, cluster.Coordinators, acknowledged);
            output.WriteLine($"(b1) leader {leader.Name} killed after Prepare: write absent everywhere, prepares aborted");

            await WaitAllVolumesUpAsync(cluster);
            // (b2) the leader proposes while both followers are frozen, so the entry cannot commit; it dies then.
            leader = await cluster.LeaderAsync(Recovery);
            var followers = cluster.Coordinators.Where(c => c != leader).ToList();
            var proposed = TestRandom.Bytes(random, 20_000);
            var proposer = leader;
            var putting = Task.Run(async () =>
            {
                using var response = await cluster.Http.SendAsync(ApiTests.Put(proposer, "fp/proposed", proposed));
                return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
            });
            await leader.WaitForOutputAsync("failpoint write.after-prepare hit: wait(", Recovery);
            foreach (var follower in followers)
            {
                follower.Pause();
            }
            await File.WriteAllTextAsync(ReleaseFile, "go");
            var (status, body) = await putting;
            output.WriteLine($"(b2) PUT to {leader.Name} with followers frozen: {status} {body}");
            Assert.True(status is 503 or 504, $"a write that could not reach a quorum was answered {status} {body}");
            leader.Kill();
            foreach (var follower in followers)
            {
                follower.Resume();
            }
            // 504 promises nothing either way: the frozen followers' kernels still accept the AppendEntries into their
            // socket buffers, so after SIGCONT they may hold the entry and a new leader commits it. What must hold is
            // one outcome on every coordinator, whole or absent, and the same after the old leader rejoins.
            var applied = await AssertAbsentOrWholeAsync(cluster, "fp/proposed", proposed);
            await AssertNoPreparedAsync(cluster);
            await RestartAsync(cluster, leader);
            Assert.Equal(applied, await AssertAbsentOrWholeAsync(cluster, "fp/proposed", proposed));
            await AssertReadableAsync(cluster, cluster.Coordinators, acknowledged);
            output.WriteLine($"(b2) leader {leader.Name} killed after proposing with both followers frozen: the write is {(applied ? "applied whole" : "absent")} on every coordinator, before and after it rejoins");

            await WaitAllVolumesUpAsync(cluster);
            // (b3) the leader dies right after the commit point, before any volume hears Commit: the write is in
            // the Raft state, so once the volumes learn the outcome it reads back whole; never a partial or wrong value.
            leader = await cluster.LeaderAsync(Recovery);
            var committed = TestRandom.Bytes(random, 40_000);
            await PutIntoDyingLeaderAsync(cluster, leader, "fp/commit-point", committed);
            Assert.True(leader.Printed("failpoint write.after-commit-point hit: kill key=fp/commit-point"), $"{leader.Name} died elsewhere");
            var survivors = cluster.Coordinators.Where(c => c.IsRunning).ToList();
            var seen = "";
            await Eventually.TrueAsync(async () =>
            {
                using var response = await cluster.Http.GetAsync(ApiTests.Url(survivors[0], "fp/commit-point"));
                seen = $"{(int)response.StatusCode} {(response.StatusCode == HttpStatusCode.OK ? "" : await response.Content.ReadAsStringAsync())}";
                Assert.True((int)response.StatusCode < 500 || response.StatusCode is HttpStatusCode.ServiceUnavailable or HttpStatusCode.BadGateway or HttpStatusCode.GatewayTimeout, seen);
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    return false;
                }
                Assert.Equal(committed, await response.Content.ReadAsByteArrayAsync());
                return true;
            }, Recovery, () => seen, "the write committed at the commit point to read back");
            acknowledged["fp/commit-point"] = committed; // from now on it must stay
            await AssertNoPreparedAsync(cluster);
            await RestartAsync(cluster, leader);
            await AssertReadableAsync(cluster, cluster.Coordinators, acknowledged);
            output.WriteLine($"(b3) leader {leader.Name} killed after the commit point: the volumes committed on the outcome and the value reads back whole");

            // A client that vanishes mid-upload: nothing committed, nothing left staged.
            var via = cluster.Coordinators[0];
            using (var client = new TcpClient())
            {
                await client.ConnectAsync(IPAddress.Loopback, via.HttpPort);
                var stream = client.GetStream();
                await stream.WriteAsync(Encoding.ASCII.GetBytes($"PUT /kv/disconnect/mid-upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {6 << 20}\r\n\r\n"));
                await stream.WriteAsync(TestRandom.Bytes(random, 3 << 20));
                await stream.FlushAsync();
                client.Client.LingerState = new LingerOption(true, 0); // close with RST, as a crashed client would
            }
            await AssertAbsentAsync(cluster, "disconnect/mid-upload");
            await AssertNoPreparedAsync(cluster);
            await PutAckedAsync(cluster, via, "disconnect/mid-upload", [7, 7, 7], acknowledged);
            output.WriteLine("client gone mid-upload: nothing stored, nothing staged, the key writable afterwards");

            // A chunked body that crosses --max-value-size (8 MiB) is refused with 413 once it does; nothing is stored.
            var (chunkedStatus, chunkedBody) = await SendChunkedAsync(via.HttpPort, "/kv/too-big/chunked", chunks: 10, chunkSize: 1 << 20);
            output.WriteLine($"chunked 10 MiB PUT -> {chunkedStatus} {chunkedBody}");
            Assert.Equal(413, chunkedStatus);
            Assert.Equal("value_too_large", JsonDocument.Parse(chunkedBody).RootElement.GetProperty("error").GetString());
            await AssertAbsentAsync(cluster, "too-big/chunked");
            await AssertNoPreparedAsync(cluster);

            await AssertReadableAsync(cluster, cluster.Coordinators, acknowledged);

            // No leader: with two coordinators gone, the last one answers writes and reads with 503 and Retry-After.
            leader = await cluster.LeaderAsync(Recovery);
            var last = cluster.Coordinators.First(c => c != leader);
            foreach (var c in cluster.Coordinators.Where(c => c != last))
            {
                c.Kill();
            }
            await Eventually.TrueAsync(async () =>
            {
                using var put = await cluster.Http.SendAsync(ApiTests.Put(last, "no-leader", [1]));
                using var get = await cluster.Http.GetAsync(ApiTests.Url(last, "acked/0"));
                seen = $"PUT {(int)put.StatusCode} {await put.Content.ReadAsStringAsync()}; GET {(int)get.StatusCode}";
                Assert.NotEqual(HttpStatusCode.Created, put.StatusCode);
                if (put.StatusCode != HttpStatusCode.ServiceUnavailable || get.StatusCode != HttpStatusCode.ServiceUnavailable)
                {
                    return false;
                }
                Assert.NotNull(put.Headers.RetryAfter);
                Assert.NotNull(get.Headers.RetryAfter);
                Assert.Equal("no_leader", JsonDocument.Parse(await put.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString());
                return true;
            }, Recovery, () => seen, "503 no_leader with Retry-After from the last coordinator");
            output.WriteLine($"no quorum: {seen}");
        });
    }

    /// <summary>The leader's /admin/status shows every volume up and healthy (placement will use all three).</summary>
    [Fact]
    public async Task A_write_is_answered_at_its_commit_point_and_reads_back_before_any_volume_hears_its_Commit()
    {
        await using var cluster = await TestCluster.StartAsync(output, configure: node =>
        {
            if (node.Name.StartsWith("vol", StringComparison.Ordinal))
            {
                node.ExtraEnvironment["MINIKV_FAILPOINTS"] = $"volume.before-commit=wait({ReleaseFile})";
            }
        });
        await cluster.RunAsync(output, async () =>
        {
            var random = TestRandom.Create(output.WriteLine);
            await WaitAllVolumesUpAsync(cluster);
            var leader = await cluster.LeaderAsync(Recovery);
            var value = TestRandom.Bytes(random, 5000);
            using (var put = await ApiTests.PutRetryingUnavailableAsync(cluster.Http, leader, "late/commit", value))
            {
                Assert.True(put.StatusCode == HttpStatusCode.Created, $"PUT while every volume holds its Commit: {(int)put.StatusCode} {await put.Content.ReadAsStringAsync()}");
            }
            foreach (var volume in cluster.Volumes)
            {
                await volume.WaitForOutputAsync("failpoint volume.before-commit hit: wait(", Recovery);
            }
            // Every coordinator reads the value back although no volume has committed it: the read names the
            // committed transaction and the volume commits it first. A redirect carries the same.
            foreach (var coordinator in cluster.Coordinators)
            {
                using var get = await cluster.Http.GetAsync(ApiTests.Url(coordinator, "late/commit"));
                Assert.True(get.StatusCode == HttpStatusCode.OK, $"GET via {coordinator.Name} before Commit: {(int)get.StatusCode} {await get.Content.ReadAsStringAsync()}");
                Assert.Equal(value, await get.Content.ReadAsByteArrayAsync());
            }
            using (var redirected = await cluster.Http.GetAsync(ApiTests.Url(leader, "late/commit") + "?redirect=true"))
            {
                Assert.True(redirected.StatusCode == HttpStatusCode.OK, $"GET ?redirect=true before Commit: {(int)redirected.StatusCode} {await redirected.Content.ReadAsStringAsync()}");
                Assert.Contains("/blob/late/commit?version=", redirected.RequestMessage!.RequestUri!.ToString(), StringComparison.Ordinal);
                Assert.Equal(value, await redirected.Content.ReadAsByteArrayAsync());
            }
            output.WriteLine("read back via every coordinator and a redirect while the Commit calls were held");

            await File.WriteAllTextAsync(ReleaseFile, "go");
            await AssertNoPreparedAsync(cluster);
            var second = TestRandom.Bytes(random, 7000);
            using (var put = await ApiTests.PutRetryingUnavailableAsync(cluster.Http, leader, "late/commit", second))
            {
                Assert.True(put.StatusCode == HttpStatusCode.Created, $"second PUT: {(int)put.StatusCode} {await put.Content.ReadAsStringAsync()}");
            }
            await AssertReadableAsync(cluster, cluster.Coordinators, new Dictionary<string, byte[]> { ["late/commit"] = second });
        });
    }

    private static async Task WaitAllVolumesUpAsync(TestCluster cluster)
    {
        var seen = "";
        await Eventually.TrueAsync(async () =>
        {
            var leader = await cluster.LeaderAsync(Recovery);
            try
            {
                seen = await cluster.Http.GetStringAsync(leader.HttpUrl + "/admin/status");
            }
            catch (HttpRequestException e)
            {
                seen = e.Message;
                return false;
            }
            var volumes = JsonDocument.Parse(seen).RootElement.GetProperty("volumes").EnumerateArray().ToList();
            return volumes.Count == 3 && volumes.All(v => v.GetProperty("state").GetString() == "up" && v.GetProperty("healthy").GetBoolean());
        }, Recovery, () => seen, "every volume up and healthy at the leader");
    }

    private static async Task PutAckedAsync(TestCluster cluster, NodeProcess via, string key, byte[] value, Dictionary<string, byte[]> acknowledged)
    {
        using var put = await ApiTests.PutRetryingUnavailableAsync(cluster.Http, via, key, value);
        Assert.True(put.StatusCode == HttpStatusCode.Created, $"PUT {key} via {via.Name}: {(int)put.StatusCode} {await put.Content.ReadAsStringAsync()}");
        acknowledged[key] = value;
    }

    /// <summary>Sends a PUT to a leader whose failpoint kills it: no answer, or anything but a 201.</summary>
    private async Task PutIntoDyingLeaderAsync(TestCluster cluster, NodeProcess leader, string key, byte[] value)
    {
        try
        {
            using var response = await cluster.Http.SendAsync(ApiTests.Put(leader, key, value));
            Assert.True(response.StatusCode != HttpStatusCode.Created, $"{leader.Name} acknowledged {key} although its failpoint kills it first");
            output.WriteLine($"PUT {key} to {leader.Name}: {(int)response.StatusCode} (it was not the leader any more?)");
        }
        catch (HttpRequestException e)
        {
            output.WriteLine($"PUT {key} to {leader.Name}: connection lost ({e.Message})");
        }
        await Eventually.TrueAsync(() => !leader.IsRunning, Recovery, () => "still running", $"{leader.Name} to die at its failpoint");
    }

    private static async Task RestartAsync(TestCluster cluster, NodeProcess node)
    {
        node.Start();
        await cluster.WaitReadyAsync([node], TestCluster.ReadyTimeout);
    }

    /// <summary>The key reads as absent through every running coordinator (503 while a leader is elected is retried).</summary>
    private static async Task AssertAbsentAsync(TestCluster cluster, string key)
    {
        foreach (var node in cluster.Coordinators.Where(c => c.IsRunning))
        {
            var seen = "";
            await Eventually.TrueAsync(async () =>
            {
                using var response = await cluster.Http.GetAsync(ApiTests.Url(node, key));
                seen = $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
                Assert.True(response.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.ServiceUnavailable, $"{key} via {node.Name}: {seen[..Math.Min(seen.Length, 300)]}");
                return response.StatusCode == HttpStatusCode.NotFound;
            }, Recovery, () => seen, $"404 for {key} via {node.Name}");
        }
    }

    /// <summary>
    /// Every running coordinator settles on one outcome for <paramref name="key"/>: 404 everywhere, or the whole
    /// <paramref name="value"/> everywhere (503 is waited out). True when it was applied.
    /// </summary>
    private static async Task<bool> AssertAbsentOrWholeAsync(TestCluster cluster, string key, byte[] value)
    {
        bool? applied = null;
        foreach (var node in cluster.Coordinators.Where(c => c.IsRunning))
        {
            var seen = "";
            await Eventually.TrueAsync(async () =>
            {
                using var response = await cluster.Http.GetAsync(ApiTests.Url(node, key));
                seen = $"{(int)response.StatusCode}";
                if (response.StatusCode == HttpStatusCode.ServiceUnavailable)
                {
                    return false;
                }
                Assert.True(response.StatusCode is HttpStatusCode.OK or HttpStatusCode.NotFound, $"{key} via {node.Name}: {seen} {await response.Content.ReadAsStringAsync()}");
                var found = response.StatusCode == HttpStatusCode.OK;
                if (found)
                {
                    var body = await response.Content.ReadAsByteArrayAsync();
                    Assert.True(value.AsSpan().SequenceEqual(body), $"{key} via {node.Name}: a partial or wrong value ({body.Length} bytes, expected {value.Length})");
                }
                applied ??= found;
                Assert.True(applied == found, $"{key}: {node.Name} says {(found ? "present" : "absent")}, another coordinator said the opposite");
                return true;
            }, Recovery, () => seen, $"an answer for {key} via {node.Name}");
        }
        return applied ?? throw new InvalidOperationException("no coordinator is running");
    }

    /// <summary>Every running volume eventually holds no prepared transaction: each one was committed or aborted.</summary>
    private static async Task AssertNoPreparedAsync(TestCluster cluster)
    {
        var seen = "";
        await Eventually.TrueAsync(async () =>
        {
            var counts = new List<string>();
            var all = 0L;
            foreach (var volume in cluster.Volumes.Where(v => v.IsRunning))
            {
                using var doc = JsonDocument.Parse(await cluster.Http.GetStringAsync(volume.HttpUrl + "/admin/status"));
                var n = doc.RootElement.GetProperty("prepared_transactions").GetInt64();
                counts.Add($"{volume.Name}={n.ToString(CultureInfo.InvariantCulture)}");
                all += n;
            }
            seen = string.Join(", ", counts);
            return all == 0;
        }, Recovery, () => seen, "no prepared transactions left on the volumes");
    }

    private static async Task AssertReadableAsync(TestCluster cluster, IReadOnlyList<NodeProcess> via, IReadOnlyDictionary<string, byte[]> acknowledged)
    {
        var i = 0;
        foreach (var (key, value) in acknowledged)
        {
            var node = via[i++ % via.Count];
            var seen = "";
            await Eventually.TrueAsync(async () =>
            {
                using var response = await cluster.Http.GetAsync(ApiTests.Url(node, key));
                seen = $"{(int)response.StatusCode}";
                Assert.True(response.StatusCode is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, $"acknowledged {key} via {node.Name}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    return false;
                }
                var body = await response.Content.ReadAsByteArrayAsync();
                Assert.True(value.AsSpan().SequenceEqual(body), $"acknowledged {key} via {node.Name}: wrong bytes ({body.Length} bytes, expected {value.Length})");
                return true;
            }, Recovery, () => seen, $"acknowledged {key} via {node.Name}");
        }
    }

    /// <summary>
    /// A chunked PUT of <paramref name="chunks"/> chunks; the server may answer and stop reading part way, so write
    /// errors end the sending and the answer is read anyway.
    /// </summary>
    private static async Task<(int Status, string Body)> SendChunkedAsync(int port, string target, int chunks, int chunkSize)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port, cts.Token);
        var stream = client.GetStream();
        var reading = ReadResponseAsync(stream, cts.Token);
        try
        {
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"), cts.Token);
            var chunk = new byte[chunkSize];
            Array.Fill(chunk, (byte)'x');
            var size = Encoding.ASCII.GetBytes(chunkSize.ToString("x", CultureInfo.InvariantCulture) + "\r\n");
            for (var i = 0; i < chunks && !reading.IsCompleted; i++)
            {
                await stream.WriteAsync(size, cts.Token);
                await stream.WriteAsync(chunk, cts.Token);
                await stream.WriteAsync("\r\n"u8.ToArray(), cts.Token);
            }
            if (!reading.IsCompleted)
            {
                await stream.WriteAsync("0\r\n\r\n"u8.ToArray(), cts.Token);
            }
        }
        catch (IOException)
        {
            // The server answered and closed while the body was still coming: its answer is what counts.
        }
        return await reading;
    }

    private static async Task<(int Status, string Body)> ReadResponseAsync(NetworkStream stream, CancellationToken cancellationToken)
    {
        var buffer = new MemoryStream();
        var chunk = new byte[8192];
        while (true)
        {
            int read;
            try
            {
                read = await stream.ReadAsync(chunk, cancellationToken);
            }
            catch (IOException) when (buffer.Length > 0)
            {
                break;
            }
            if (read == 0)
            {
                break;
            }
            buffer.Write(chunk, 0, read);
            var text = Encoding.UTF8.GetString(buffer.ToArray());
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0 && text[(end + 4)..].TrimEnd().EndsWith('}'))
            {
                break;
            }
        }
        var all = Encoding.UTF8.GetString(buffer.ToArray());
        var split = all.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var status = int.Parse(all.Split(' ', 3)[1], CultureInfo.InvariantCulture);
        var body = split >= 0 ? all[(split + 4)..] : "";
        // A chunked answer: keep the JSON object between the chunk-size lines.
        var open = body.IndexOf('{', StringComparison.Ordinal);
        var close = body.LastIndexOf('}');
        return (status, open >= 0 && close > open ? body[open..(close + 1)] : body);
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_releaseDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
