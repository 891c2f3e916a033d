using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MiniKV.Consensus;
using MiniKV.Consensus.Grpc;
using MiniKV.Consensus.Hosting;
using MiniKV.Consensus.Storage;

namespace MiniKV.RaftBench;

/// <summary>
/// <c>node</c>: one real Raft member (RaftHost + FileRaftStorage with fsync + GrpcRaftTransport in Kestrel h2c) with
/// <see cref="AppliedLogStateMachine"/>, a binary client port for proposals and reads (<see cref="NodeClientEndpoint"/>),
/// and a plain-text HTTP/1.1 endpoint for status, the applied ids and slow-path proposals (<see cref="NodeHttpApi"/>).
/// Peers are found by Hello on their gRPC addresses; the founding members are this node and every peer.
/// Runs until SIGTERM or Ctrl-C.
/// </summary>
internal static class NodeMode
{
    /// <summary>
    /// Kestrel runs request code on the socket thread that received the bytes instead of queueing it to the thread pool
    /// (one wake-up fewer per inbound Raft batch and client request). Safe here because nothing on those paths blocks:
    /// the handlers only queue work for the Raft loop. MINIKV_RAFTBENCH_INLINE_IO=0 turns it off for comparison.
    /// </summary>
    public static bool InlineIo { get; } = Environment.GetEnvironmentVariable("MINIKV_RAFTBENCH_INLINE_IO") != "0";

    public static async Task<int> RunAsync(BenchArgs flags)
    {
        var id = flags.String("id");
        var grpc = IPEndPoint.Parse(flags.String("grpc"));
        var http = IPEndPoint.Parse(flags.String("http", "127.0.0.1:0"));
        var clientPort = IPEndPoint.Parse(flags.String("client", "127.0.0.1:0"));
        var data = flags.String("data");
        var peers = flags.String("peers").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var (electionMin, electionMax) = ParseRange(flags.String("election-timeout-ms", "150-300"));
        var heartbeat = flags.Int("heartbeat-ms", 50);
        var snapshotEvery = flags.Int("snapshot-every", 1_000_000);
        var leaseReads = bool.Parse(flags.String("lease-reads", "false"));
        var seed = flags.Optional("seed") is { } s ? int.Parse(s, CultureInfo.InvariantCulture) : (int?)null;
        flags.ThrowIfUnused();

        Directory.CreateDirectory(Path.Combine(data, "raft"));
        var transport = new GrpcRaftTransport(id);
        var api = new NodeHttpApi();
        var clientEndpoint = new NodeClientEndpoint(api.Attached);
        ListenOptions? clientListen = null;
        ListenOptions? httpListen = null;
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseSockets(o => o.UnsafePreferInlineScheduling = InlineIo);
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole().SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddRaftTransport(transport);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(http, o =>
            {
                o.Protocols = HttpProtocols.Http1;
                httpListen = o;
            });
            k.Listen(grpc, o => o.Protocols = HttpProtocols.Http2);
            k.Listen(clientPort, o =>
            {
                clientListen = o;
                o.Run(clientEndpoint.HandleAsync);
            });
        });
        await using var app = builder.Build();
        app.MapRaftTransport();
        api.Map(app);
        await app.StartAsync();
        // ListenOptions learn the ports Kestrel bound (port 0) once it started.
        var httpBound = httpListen!.IPEndPoint!;
        var grpcBound = grpc;
        api.ClientAddress = clientListen!.IPEndPoint!.ToString();
        Console.Out.WriteLine($"serving HTTP on {httpBound.Address}:{httpBound.Port} and gRPC on {grpcBound.Address}:{grpcBound.Port}; node {id}; client port {api.ClientAddress}");
        Console.Out.Flush();

        var others = peers.Where(p => p != $"{grpc.Address}:{grpc.Port}").ToList();
        var found = await transport.DiscoverPeersAsync(others, TimeSpan.FromSeconds(120));
        if (found.Count != others.Count)
        {
            await Console.Error.WriteLineAsync($"raft-bench node {id}: only {found.Count} of {others.Count} peers answered Hello");
            return 1;
        }
        var addresses = found.ToDictionary(kv => kv.Value, kv => kv.Key, StringComparer.Ordinal);
        addresses[id] = $"{grpc.Address}:{grpc.Port}";

        using var storage = new FileRaftStorage(Path.Combine(data, "raft"));
        using var stateMachine = new AppliedLogStateMachine(Path.Combine(data, "applied.log"));
        var host = new RaftHost(new RaftHostOptions
        {
            NodeId = id,
            InitialMembers = new ConfState([.. addresses.Keys.Order(StringComparer.Ordinal)], []),
            PeerAddresses = addresses,
            ElectionTimeoutMin = TimeSpan.FromMilliseconds(electionMin),
            ElectionTimeoutMax = TimeSpan.FromMilliseconds(electionMax),
            HeartbeatInterval = TimeSpan.FromMilliseconds(heartbeat),
            SnapshotEveryEntries = snapshotEvery,
            LeaseReads = leaseReads,
            SnapshotStagingDirectory = Path.Combine(data, "raft"),
            Seed = seed,
        }, storage, transport, stateMachine);
        transport.Handler = host;
        transport.PeerUnreachable += host.ReportUnreachable;
        host.Start();
        _ = host.Stopped.ContinueWith(t =>
        {
            if (t.Result is { } fault)
            {
                Console.Error.WriteLine($"raft-bench node {id}: the Raft loop failed; exiting: {fault}");
                Console.Error.Flush();
                Environment.Exit(70);
            }
        }, TaskScheduler.Default);
        if (Environment.GetEnvironmentVariable("MINIKV_RAFTBENCH_TRACE") == "1")
        {
            new Thread(() => TraceRoles(host, transport)) { IsBackground = true, Name = "trace" }.Start();
            transport.PeerUnreachable += peer => Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{DateTime.UtcNow:HH:mm:ss.fff} {id}: stream to {peer} broke (reported to Raft)"));
        }
        api.Attach(host, stateMachine);
        Console.Out.WriteLine($"raft node {id} started with members {string.Join(',', addresses.Keys.Order(StringComparer.Ordinal))}");
        Console.Out.Flush();

        await app.WaitForShutdownAsync();
        api.Detach();
        await host.DisposeAsync();
        await transport.DisposeAsync();
        return 0;
    }

    /// <summary>
    /// MINIKV_RAFTBENCH_TRACE=1: prints, with UTC times, every change of role, term or leader and the first commit
    /// after it (polled every 2 ms from the status the Raft loop publishes after each pass, so a delayed thread-pool
    /// callback does not skew the times), to trace a failover across the members' logs.
    /// </summary>
    private static void TraceRoles(RaftHost host, GrpcRaftTransport transport)
    {
        var last = host.Status;
        var commitSeen = true;
        while (true)
        {
            Thread.Sleep(2);
            var now = host.Status;
            var changed = now.Role != last.Role || now.Term != last.Term || now.Leader != last.Leader;
            if (changed || (!commitSeen && now.CommitIndex != last.CommitIndex))
            {
                var c = transport.GetCounters();
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{DateTime.UtcNow:HH:mm:ss.fff} {now.NodeId}: {now.Role} term={now.Term} leader={now.Leader ?? "-"} commit={now.CommitIndex} applied={now.AppliedIndex} last={now.LastIndex} syncs={now.Syncs} dropped={c.MessagesDropped} reconnects={c.Reconnects}"));
                commitSeen = !changed;
                last = now;
            }
        }
    }

    private static (int Min, int Max) ParseRange(string text)
    {
        var parts = text.Split('-');
        return parts.Length == 2
            ? (int.Parse(parts[0], CultureInfo.InvariantCulture), int.Parse(parts[1], CultureInfo.InvariantCulture))
            : throw new ArgumentException($"--election-timeout-ms expects MIN-MAX, got '{text}'");
    }
}
