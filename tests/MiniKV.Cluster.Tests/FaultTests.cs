using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using MiniKV.Cluster.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Cluster.Tests;

/// <summary>SIGKILL of coordinators and volumes: the cluster recovers and loses no acknowledged write.</summary>
public sealed class FaultTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Recovery = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Killing_the_leader_then_volumes_then_restarting_everything_loses_no_acknowledged_write()
    {
        await using var cluster = await TestCluster.StartAsync(output);
        await cluster.RunAsync(output, async () =>
        {
            var random = TestRandom.Create(output.WriteLine);
            var http = cluster.Http;
            var acknowledged = new ConcurrentDictionary<string, byte[]>();
            var counter = 0;

            async Task<HttpResponseMessage?> TryPutAsync(NodeProcess via, string prefix)
            {
                var key = $"{prefix}/{Interlocked.Increment(ref counter):D5}";
                byte[] value;
                lock (random)
                {
                    value = TestRandom.Bytes(random, random.Next(1, 20_000));
                }
                try
                {
                    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                    var response = await http.SendAsync(ApiTests.Put(via, key, value), cts.Token);
                    Assert.NotEqual(HttpStatusCode.InternalServerError, response.StatusCode);
                    if (response.StatusCode == HttpStatusCode.Created)
                    {
                        acknowledged[key] = value;
                    }
                    return response;
                }
                catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
                {
                    return null;
                }
            }

            // A 503 (leadership moved, nothing written) is an allowed answer on this loaded box; retry it.
            async Task PutUntilCreatedAsync(NodeProcess via, string prefix)
            {
                HttpStatusCode? last = null;
                await Eventually.TrueAsync(async () =>
                {
                    using var r = await TryPutAsync(via, prefix);
                    last = r?.StatusCode;
                    Assert.True(r == null || r.StatusCode is HttpStatusCode.Created or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout, $"PUT via {via.Name}: {r?.StatusCode}");
                    return last == HttpStatusCode.Created;
                }, Recovery, () => $"last {last}", $"a 201 via {via.Name}");
            }

            for (var i = 0; i < 20; i++)
            {
                await PutUntilCreatedAsync(cluster.Coordinators[i % 3], "before");
            }

            // Writers keep going through the followers while the leader is killed.
            var leader = await cluster.LeaderAsync(Recovery);
            var survivors = cluster.Coordinators.Where(c => c != leader).ToList();
            using var stopWriters = new CancellationTokenSource();
            var writers = survivors.Select(via => Task.Run(async () =>
            {
                while (!stopWriters.IsCancellationRequested)
                {
                    using var r = await TryPutAsync(via, "during-" + via.Name);
                    if (r == null || r.StatusCode != HttpStatusCode.Created)
                    {
                        await Task.Delay(50);
                    }
                }
            })).ToList();
            await Eventually.TrueAsync(() => acknowledged.Count >= 30, Recovery, () => acknowledged.Count.ToString(CultureInfo.InvariantCulture), "writes before the kill");
            leader.Kill();
            var clock = Stopwatch.StartNew();
            var ackedAtKill = acknowledged.Count;
            output.WriteLine($"SIGKILL leader {leader.Name} with {ackedAtKill} writes acknowledged");
            await Eventually.TrueAsync(async () =>
            {
                using var r = await TryPutAsync(survivors[0], "after-kill");
                return r?.StatusCode == HttpStatusCode.Created;
            }, Recovery, () => "no 201 yet", "a write accepted by a surviving coordinator");
            output.WriteLine($"writes accepted again {clock.ElapsedMilliseconds} ms after killing the leader");
            await Eventually.TrueAsync(() => acknowledged.Count >= ackedAtKill + 10, Recovery, () => acknowledged.Count.ToString(CultureInfo.InvariantCulture), "writes after the kill");
            await stopWriters.CancelAsync();
            await Task.WhenAll(writers);
            await AssertAllReadableAsync(cluster, survivors, acknowledged);

            // One volume down: writes still succeed (under-replicated, W=2).
            var deadVolume = cluster.Volumes[random.Next(3)];
            deadVolume.Kill();
            clock.Restart();
            await Eventually.TrueAsync(async () =>
            {
                using var r = await TryPutAsync(survivors[1], "one-volume-down");
                return r?.StatusCode == HttpStatusCode.Created;
            }, Recovery, () => "no 201 yet", "a write with one volume down");
            output.WriteLine($"{deadVolume.Name} killed; first write accepted after {clock.ElapsedMilliseconds} ms");
            for (var i = 0; i < 5; i++)
            {
                await PutUntilCreatedAsync(survivors[i % 2], "one-volume-down");
            }

            // Two volumes down: fewer than W healthy volumes is 503 with Retry-After, never an acknowledgement.
            var secondDead = cluster.Volumes.First(v => v != deadVolume);
            secondDead.Kill();
            clock.Restart();
            HttpResponseMessage? refused = null;
            var ackedBefore = acknowledged.Count;
            await Eventually.TrueAsync(async () =>
            {
                var r = await TryPutAsync(survivors[0], "two-volumes-down");
                if (r?.StatusCode == HttpStatusCode.ServiceUnavailable)
                {
                    refused = r;
                    return true;
                }
                r?.Dispose();
                return false;
            }, Recovery, () => "no 503 yet", "503 with two volumes down");
            output.WriteLine($"{secondDead.Name} killed too; 503 after {clock.ElapsedMilliseconds} ms; Retry-After {refused!.Headers.RetryAfter}");
            Assert.NotNull(refused.Headers.RetryAfter);
            refused.Dispose();
            // A write acknowledged after the second volume died would have only one copy.
            var lateAcks = acknowledged.Keys.Where(k => k.StartsWith("two-volumes-down/", StringComparison.Ordinal)).ToList();
            output.WriteLine($"acknowledged while the second volume was dying: {lateAcks.Count} (acked before: {ackedBefore})");

            // Everything down hard, then back on the same data.
            foreach (var node in cluster.All)
            {
                node.Kill();
            }
            foreach (var node in cluster.All)
            {
                node.Start();
            }
            clock.Restart();
            await cluster.WaitReadyAsync(cluster.All, TestCluster.ReadyTimeout);
            output.WriteLine($"all six restarted on the same data and ready after {clock.ElapsedMilliseconds} ms");
            await AssertAllReadableAsync(cluster, cluster.Coordinators, acknowledged);
            output.WriteLine($"{acknowledged.Count} acknowledged keys read back with the right bytes");
        });
    }

    private static async Task AssertAllReadableAsync(TestCluster cluster, IReadOnlyList<NodeProcess> via, IReadOnlyDictionary<string, byte[]> acknowledged)
    {
        var i = 0;
        foreach (var (key, value) in acknowledged)
        {
            var node = via[i++ % via.Count];
            // Leadership can still move right after /health/ready; a 503 says "retry" and never "not found", so it is
            // retried (for Recovery at most) like a client would; any other answer is the verdict.
            HttpStatusCode status = 0;
            byte[] body = [];
            await Eventually.TrueAsync(async () =>
            {
                using var response = await cluster.Http.GetAsync(ApiTests.Url(node, key));
                status = response.StatusCode;
                body = await response.Content.ReadAsByteArrayAsync();
                return status != HttpStatusCode.ServiceUnavailable;
            }, Recovery, () => $"{key} via {node.Name}: still 503 {System.Text.Encoding.UTF8.GetString(body)}", "an answer other than 503");
            Assert.True(status == HttpStatusCode.OK, $"acknowledged {key} via {node.Name}: {(int)status} {System.Text.Encoding.UTF8.GetString(body)}");
            Assert.True(value.AsSpan().SequenceEqual(body), $"acknowledged {key} via {node.Name}: wrong bytes ({body.Length} bytes, expected {value.Length})");
        }
    }
}
