using System.Diagnostics;
using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MiniKV.Consensus;
using MiniKV.Consensus.Grpc;
using MiniKV.Consensus.Hosting;
using MiniKV.Consensus.Storage;

namespace MiniKV.RaftBench;

/// <summary>
/// <c>inproc</c>: three RaftHosts in this one process, each with FileRaftStorage (fsync on), its own Kestrel h2c endpoint
/// and GrpcRaftTransport on loopback, and <see cref="AppliedLogStateMachine"/>; closed-loop proposers call the leader's
/// <see cref="RaftHost.ProposeAsync"/> directly. What it measures is consensus alone, without the client protocol, so
/// comparing it with <c>load</c> separates the two. Also prints the leader's syncs and entries per sync and the
/// transport's messages per batch.
/// </summary>
internal static class InProcMode
{
    public static async Task<int> RunAsync(BenchArgs flags)
    {
        var proposers = flags.String("proposers", "1,16,64,256").Split(',').Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToArray();
        var seconds = flags.Double("seconds", 5);
        var payload = new byte[flags.Int("payload", 100)];
        var reads = flags.Double("read-seconds", 0);
        flags.ThrowIfUnused();
        new Random(1).NextBytes(payload);

        var root = Path.Combine(Path.GetTempPath(), "minikv-raft-inproc-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(root);
        var nodes = new List<InProcNode>();
        try
        {
            foreach (var id in new[] { "n1", "n2", "n3" })
            {
                nodes.Add(await InProcNode.StartServerAsync(id, Path.Combine(root, id)));
            }
            var addresses = nodes.ToDictionary(n => n.Id, n => n.Address, StringComparer.Ordinal);
            foreach (var n in nodes)
            {
                n.StartRaft(addresses);
            }
            var leader = await WaitForLeaderAsync(nodes);
            Console.Out.WriteLine($"leader {leader.Id}");
            foreach (var n in proposers)
            {
                var before = Counters(nodes, leader);
                var (count, latencies, elapsed) = await ClosedLoopAsync(n, seconds, async ct =>
                {
                    var r = await leader.Host.ProposeAsync(payload, Guid.NewGuid(), ct);
                    return r.Status == ProposalStatus.Applied;
                });
                var after = Counters(nodes, leader);
                var s = LatencySummary.From(latencies);
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"RESULT mode=inproc proposers={n} commits={count} seconds={elapsed:F1} rate={count / elapsed:F0} p50_ms={s.P50Ms:F2} p99_ms={s.P99Ms:F2} max_ms={s.MaxMs:F1} "
                    + $"leader_syncs={after.Syncs - before.Syncs} entries_per_sync={(after.Entries - before.Entries) / (double)Math.Max(1, after.Syncs - before.Syncs):F1} "
                    + $"msgs_per_batch={(after.Messages - before.Messages) / (double)Math.Max(1, after.Batches - before.Batches):F1} cpu_ms_per_commit={(after.CpuMs - before.CpuMs) / Math.Max(1, count):F3}"));
            }
            if (reads > 0)
            {
                var (count, latencies, elapsed) = await ClosedLoopAsync(1, reads, ct => leader.Host.ReadBarrierAsync(ct));
                var s = LatencySummary.From(latencies);
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"RESULT mode=inproc-read readers=1 reads={count} seconds={elapsed:F1} rate={count / elapsed:F0} p50_ms={s.P50Ms:F2} p99_ms={s.P99Ms:F2}"));
            }
            return 0;
        }
        finally
        {
            foreach (var n in nodes)
            {
                await n.DisposeAsync();
            }
            Directory.Delete(root, recursive: true);
        }
    }

    private static (long Syncs, long Entries, long Messages, long Batches, double CpuMs) Counters(List<InProcNode> nodes, InProcNode leader)
    {
        var status = leader.Host.Status;
        long messages = 0, batches = 0;
        foreach (var n in nodes)
        {
            var c = n.Transport.GetCounters();
            messages += c.MessagesSent;
            batches += c.BatchesSent;
        }
        return (status.Syncs, status.EntriesPersisted, messages, batches, Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds);
    }

    private static async Task<InProcNode> WaitForLeaderAsync(List<InProcNode> nodes)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            if (nodes.FirstOrDefault(n => n.Host.Leader.IsLeader) is { } leader)
            {
                // Wait for the leader's no-op to commit and apply, so the first proposals do not queue behind it.
                var r = await leader.Host.ProposeAsync(new byte[1], Guid.NewGuid(), CancellationToken.None);
                if (r.Status == ProposalStatus.Applied)
                {
                    return leader;
                }
            }
            await Task.Delay(20);
        }
        throw new TimeoutException("no leader within 30 s");
    }

    internal static async Task<(long Count, List<long> Latencies, double Seconds)> ClosedLoopAsync(int workers, double seconds, Func<CancellationToken, Task<bool>> operation)
    {
        var measuring = 0;
        var perWorker = new List<long>[workers];
        using var stop = new CancellationTokenSource();
        var tasks = Enumerable.Range(0, workers).Select(w => Task.Run(async () =>
        {
            var latencies = perWorker[w] = new List<long>(4096);
            while (!stop.IsCancellationRequested)
            {
                var start = Stopwatch.GetTimestamp();
                bool ok;
                try
                {
                    ok = await operation(stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                if (ok && Volatile.Read(ref measuring) == 1 && !stop.IsCancellationRequested)
                {
                    latencies.Add(Stopwatch.GetTimestamp() - start);
                }
            }
        })).ToArray();
        await Task.Delay(TimeSpan.FromSeconds(1));
        Volatile.Write(ref measuring, 1);
        var clock = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        await stop.CancelAsync();
        var elapsed = clock.Elapsed.TotalSeconds;
        await Task.WhenAll(tasks);
        var all = perWorker.SelectMany(l => l).ToList();
        return (all.Count, all, elapsed);
    }

    private sealed class InProcNode : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly string _dir;
        private FileRaftStorage? _storage;
        private AppliedLogStateMachine? _sm;
        private RaftHost? _host;

        private InProcNode(string id, string dir, WebApplication app, GrpcRaftTransport transport, int port)
        {
            Id = id;
            _dir = dir;
            _app = app;
            Transport = transport;
            Address = $"127.0.0.1:{port}";
        }

        public string Id { get; }
        public string Address { get; }
        public GrpcRaftTransport Transport { get; }
        public RaftHost Host => _host!;

        public static async Task<InProcNode> StartServerAsync(string id, string dir)
        {
            Directory.CreateDirectory(Path.Combine(dir, "raft"));
            var transport = new GrpcRaftTransport(id);
            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "raft-inproc-" + id });
            builder.WebHost.UseSockets(o => o.UnsafePreferInlineScheduling = NodeMode.InlineIo);
            builder.Logging.ClearProviders();
            builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(2));
            ListenOptions? listen = null;
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, lo =>
            {
                lo.Protocols = HttpProtocols.Http2;
                listen = lo;
            }));
            builder.Services.AddRaftTransport(transport);
            var app = builder.Build();
            app.MapRaftTransport();
            await app.StartAsync();
            return new InProcNode(id, dir, app, transport, listen!.IPEndPoint!.Port);
        }

        public void StartRaft(Dictionary<string, string> addresses)
        {
            _storage = new FileRaftStorage(Path.Combine(_dir, "raft"));
            _sm = new AppliedLogStateMachine(Path.Combine(_dir, "applied.log"));
            _host = new RaftHost(new RaftHostOptions
            {
                NodeId = Id,
                InitialMembers = new ConfState([.. addresses.Keys.Order(StringComparer.Ordinal)], []),
                PeerAddresses = addresses,
                SnapshotEveryEntries = 1_000_000,
            }, _storage, Transport, _sm);
            Transport.Handler = _host;
            _host.Start();
        }

        public async ValueTask DisposeAsync()
        {
            if (_host is not null)
            {
                await _host.DisposeAsync();
            }
            await Transport.DisposeAsync();
            await _app.StopAsync();
            await _app.DisposeAsync();
            _storage?.Dispose();
            _sm?.Dispose();
        }
    }
}
