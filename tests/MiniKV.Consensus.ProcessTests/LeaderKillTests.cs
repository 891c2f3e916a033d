using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using MiniKV.RaftBench;
using MiniKV.Testing.Cluster;
using Xunit.Abstractions;

namespace MiniKV.Consensus.ProcessTests;

/// <summary>
/// Three RaftBench nodes (RaftHost + FileRaftStorage + GrpcRaftTransport) as real processes on loopback. Under a
/// 16-writer load the leader is SIGKILLed and restarted on its data, repeatedly; afterwards every acknowledged
/// proposal must be applied exactly once on every node, and all nodes must have applied the same sequence.
/// MINIKV_HEAVY=1 raises the kills from 3 to 20; MINIKV_SEED replays a seed.
/// </summary>
public sealed class LeaderKillTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly string _root = Path.Combine(Path.GetTempPath(), "minikv-raft-proc-" + Guid.NewGuid().ToString("N"));
    private readonly NodeProcess?[] _nodes = new NodeProcess?[3];

    [Fact]
    public async Task Acknowledged_proposals_are_applied_exactly_once_everywhere_across_leader_kills()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("MINIKV_SEED"), out var s) ? s : Environment.TickCount & 0xFFFF;
        var kills = Environment.GetEnvironmentVariable("MINIKV_HEAVY") == "1" ? 20 : 3;
        output.WriteLine($"seed {seed} (MINIKV_SEED={seed} replays the ids and election timers), kills {kills}");
        var ports = FreePorts(3);
        var peers = string.Join(',', ports.Select(p => $"127.0.0.1:{p}"));
        var ids = new[] { "n1", "n2", "n3" };
        var urls = new string[3];
        for (var i = 0; i < 3; i++)
        {
            _nodes[i] = StartNode(ids[i], ports[i], Path.Combine(_root, ids[i]), peers, seed + i);
        }
        for (var i = 0; i < 3; i++)
        {
            urls[i] = await HttpUrlAsync(_nodes[i]!);
        }
        using var client = new RaftClusterClient(ids.Select((id, i) => new KeyValuePair<string, string>(id, urls[i])));

        var acked = new ConcurrentBag<Guid>();
        using var stop = new CancellationTokenSource();
        var random = new Random(seed);
        var writerSeeds = Enumerable.Range(0, 16).Select(_ => random.Next()).ToArray();
        var writers = writerSeeds.Select(ws => Task.Run(async () =>
        {
            var r = new Random(ws);
            var bytes = new byte[16];
            var payload = new byte[100];
            while (!stop.IsCancellationRequested)
            {
                r.NextBytes(bytes);
                r.NextBytes(payload);
                var id = new Guid(bytes);
                if (await client.ProposeAsync(id, payload, stop.Token))
                {
                    acked.Add(id);
                }
            }
        })).ToArray();

        for (var k = 0; k < kills; k++)
        {
            var before = acked.Count;
            await WaitUntilAsync(() => acked.Count >= before + 200, $"200 acknowledgements before kill {k + 1}", () => Diagnostics(client));
            var leader = await WaitForAsync(() => client.LeaderNameAsync(CancellationToken.None), "a leader");
            var victim = Array.IndexOf(ids, leader);
            var clock = Stopwatch.StartNew();
            _nodes[victim]!.Kill();
            var atKill = acked.Count;
            await WaitUntilAsync(() => acked.Count > atKill + 16, $"commits after killing {leader}", () => Diagnostics(client));
            output.WriteLine($"kill {k + 1}: {leader} killed; writes resumed within {clock.ElapsedMilliseconds} ms");
            _nodes[victim]!.Dispose();
            _nodes[victim] = StartNode(leader, ports[victim], Path.Combine(_root, leader), peers, seed + victim + 10 * (k + 1));
            client.SetMember(leader, await HttpUrlAsync(_nodes[victim]!));
            // Back in the cluster (its peers answered Hello and it follows a leader) before the next kill, or that
            // kill would leave one node of three.
            await WaitForAsync(async () => await client.StatusAsync(leader, CancellationToken.None) is { Leader: not "?" } st ? st.Leader : null, leader + " to rejoin");
        }
        var last = acked.Count;
        await WaitUntilAsync(() => acked.Count >= last + 200, "200 acknowledgements after the last restart", () => Diagnostics(client));
        await stop.CancelAsync();
        await Task.WhenAll(writers);

        // Everything committed reaches every node: wait until all three report the same applied count.
        NodeStatus?[] statuses = [];
        await WaitUntilAsync(() =>
        {
            statuses = [.. ids.Select(id => client.StatusAsync(id, CancellationToken.None).GetAwaiter().GetResult())];
            return statuses.All(st => st != null) && statuses.Select(st => st!.Commit).Distinct().Count() == 1
                && statuses.All(st => st!.Applied == st.Commit);
        }, "all nodes to apply the same commit index", () => string.Join("; ", statuses.Select(st => st?.ToString() ?? "down")));

        // A proposal still in flight when the writers stopped may commit after that check, so the lists are read until
        // all three have the same length. Meanwhile each must be a prefix of the longest: no two nodes apply different
        // entries at one position.
        List<Guid>?[] applied = [];
        await WaitUntilAsync(() =>
        {
            applied = [.. ids.Select(id => client.AppliedAsync(id, CancellationToken.None).GetAwaiter().GetResult())];
            if (applied.Any(list => list is null))
            {
                return false;
            }
            var longest = applied.MaxBy(list => list!.Count)!;
            for (var i = 0; i < ids.Length; i++)
            {
                var diverges = FirstDifference(applied[i]!, longest);
                if (diverges >= 0)
                {
                    Assert.Fail($"{ids[i]} applied {applied[i]![diverges]} at position {diverges}, another node {longest[diverges]}");
                }
            }
            return applied.All(list => list!.Count == longest.Count);
        }, "all nodes to apply the same number of entries", () => string.Join("; ", applied.Select(list => list?.Count.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "no answer")));
        output.WriteLine($"acknowledged {acked.Count}, applied {applied[0]!.Count}");
        foreach (var (list, i) in applied.Select((l, i) => (l!, i)))
        {
            var duplicates = list.GroupBy(g => g).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
            Assert.True(duplicates.Count == 0, $"{ids[i]} applied {duplicates.Count} request ids more than once, e.g. {duplicates.FirstOrDefault()}");
            var set = list.ToHashSet();
            var missing = acked.Where(a => !set.Contains(a)).ToList();
            Assert.True(missing.Count == 0, $"{ids[i]} lacks {missing.Count} acknowledged proposals, e.g. {missing.FirstOrDefault()}");
        }
    }

    /// <summary>One <c>dotnet MiniKV.RaftBench.dll node ...</c> child process on its data directory.</summary>
    private static NodeProcess StartNode(string id, int grpcPort, string data, string peers, int seed) =>
        new NodeProcess(id, new NodeStartInfo(Path.Combine(AppContext.BaseDirectory, "MiniKV.RaftBench.dll"),
        [
            "node", "--id", id, "--grpc", $"127.0.0.1:{grpcPort}", "--http", "127.0.0.1:0", "--data", data, "--peers", peers,
            "--seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
            // Small enough that snapshots and log compaction happen during the test.
            "--snapshot-every", "2000",
        ])
        {
            // Role, term and leader changes with UTC times, so a failure message shows how each node saw the failovers.
            Environment = new Dictionary<string, string> { ["MINIKV_RAFTBENCH_TRACE"] = "1" },
        }).Launch();

    private static async Task<string> HttpUrlAsync(NodeProcess node) => "http://" + (await node.WaitForServingAsync(Patience)).Http;

    public void Dispose()
    {
        foreach (var node in _nodes)
        {
            node?.Dispose();
        }
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string Output() => string.Join("\n---\n", _nodes.Select(n => n?.Tail(500) ?? ""));

    /// <summary>Each node's /status line and its output (the role trace), for a failure message.</summary>
    private string Diagnostics(RaftClusterClient client) =>
        string.Join("\n", client.Members.Keys.Order(StringComparer.Ordinal).Select(id =>
            $"{id}: {client.StatusAsync(id, CancellationToken.None).GetAwaiter().GetResult()?.ToString() ?? "no answer"}"))
        + "\n---\n" + Output();

    private static int FirstDifference(List<Guid> list, List<Guid> longer)
    {
        for (var i = 0; i < list.Count; i++)
        {
            if (list[i] != longer[i])
            {
                return i;
            }
        }
        return -1;
    }

    private static int[] FreePorts(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
        listeners.ForEach(l => l.Start());
        var ports = listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
        listeners.ForEach(l => l.Stop());
        return ports;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what, Func<string> context)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Patience)
            {
                throw new TimeoutException($"timed out waiting for {what}: {context()}");
            }
            await Task.Delay(20);
        }
    }

    private static async Task<string> WaitForAsync(Func<Task<string?>> probe, string what)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Patience)
        {
            if (await probe() is { } found)
            {
                return found;
            }
            await Task.Delay(20);
        }
        throw new TimeoutException("timed out waiting for " + what);
    }
}
