using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using MiniKV.Common;
using MiniKV.Coordinator.Http;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator;

/// <summary>What a <see cref="CoordinatorServer"/> is built from besides its options: the pluggable parts.</summary>
/// <param name="Consensus">Creates the Raft engine over the server's state machine.</param>
/// <param name="Volumes">Creates the volume client layer (2PC writes, reads with failover).</param>
/// <param name="Forwarder">Creates the follower-to-leader request proxy; null answers followers' requests with 503 naming the leader.</param>
/// <param name="Copier">Creates the volume-to-volume copier rebalance and drain use; null: the volumes' Pull over gRPC.</param>
public sealed record CoordinatorComponents(
    ConsensusModuleFactory Consensus,
    Func<IServiceProvider, IVolumeOperations> Volumes,
    Func<IServiceProvider, IRequestForwarder>? Forwarder = null,
    Func<IServiceProvider, Operations.Rebalance.IReplicaCopier>? Copier = null);

/// <summary>
/// A coordinator that can run inside any process: it opens the metadata under --db, starts the consensus module,
/// serves the public HTTP API on <see cref="CoordinatorServerOptions.Bind"/> and the Coordinator gRPC service (and
/// the consensus transport) on <see cref="CoordinatorServerOptions.Grpc"/>. Ports 0 bind free ports.
/// Thread-safety: start once, dispose once; the properties may be read anywhere.
/// </summary>
public sealed class CoordinatorServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly IConsensusModule _consensus;
    private int _disposed;

    private readonly ILoggerFactory _consensusLogging;
    private Operations.ClusterMaintenance? _maintenance;
    private Operations.GrpcVolumeMaintenance? _maintenanceVolumes;

    private CoordinatorServer(WebApplication app, IConsensusModule consensus, CoordinatorNode node, MetadataStateMachine stateMachine, ILoggerFactory consensusLogging, IPEndPoint http, IPEndPoint grpc)
    {
        _consensusLogging = consensusLogging;
        _app = app;
        _consensus = consensus;
        Node = node;
        StateMachine = stateMachine;
        HttpEndPoint = http;
        GrpcEndPoint = grpc;
    }

    public CoordinatorNode Node { get; }
    public MetadataStateMachine StateMachine { get; }
    public IPEndPoint HttpEndPoint { get; }
    public IPEndPoint GrpcEndPoint { get; }

    /// <summary>http://host:port of the bound HTTP endpoint (loopback when bound to every interface).</summary>
    public Uri HttpUri => new("http://" + Reachable(HttpEndPoint));

    /// <summary>http://host:port of the bound gRPC endpoint.</summary>
    public Uri GrpcUri => new("http://" + Reachable(GrpcEndPoint));

    public static async Task<CoordinatorServer> StartAsync(CoordinatorServerOptions options, CoordinatorComponents components, CancellationToken cancellationToken = default)
    {
        var bind = Endpoints.Parse(options.Bind, "--bind");
        var grpc = Endpoints.Parse(options.Grpc, "--grpc");
        Directory.CreateDirectory(options.DbDirectory);
        var stateMachine = new MetadataStateMachine(options.DbDirectory);
        WebApplication? app = null;
        IConsensusModule? consensus = null;
        ILoggerFactory? loggerFactory = null;
        Operations.ClusterMaintenance? maintenance = null;
        Operations.GrpcVolumeMaintenance? maintenanceVolumes = null;
        try
        {
            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
            {
                Args = [],
                ApplicationName = "minikv-coord",
                ContentRootPath = AppContext.BaseDirectory,
            });
            builder.Logging.ClearProviders();
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
            builder.Logging.SetMinimumLevel(options.LogLevel);
            builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
            builder.Logging.AddFilter("Grpc", LogLevel.Warning);
            builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
            ListenOptions? httpListen = null, grpcListen = null;
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.AddServerHeader = false;
                k.Limits.MaxRequestBodySize = null; // --max-value-size is enforced by the write path, streaming
                k.Listen(bind, lo =>
                {
                    PriorKnowledgeHttp2.Use(k, lo); // HTTP/1.1, and HTTP/2 for clients that open with its preface
                    httpListen = lo;
                });
                k.Listen(grpc, lo =>
                {
                    lo.Protocols = HttpProtocols.Http2; // h2c needs prior knowledge: HTTP/2 only
                    grpcListen = lo;
                });
            });
            builder.Services.AddGrpc(o => o.EnableDetailedErrors = false);

            // The consensus module needs the logger factory before the host exists: a temporary one routes to the same console.
            loggerFactory = LoggerFactory.Create(l =>
            {
                l.AddSimpleConsole(o =>
                {
                    o.SingleLine = true;
                    o.TimestampFormat = "HH:mm:ss.fff ";
                });
                l.SetMinimumLevel(options.LogLevel);
            });
            consensus = components.Consensus(new ConsensusContext(options, stateMachine, loggerFactory));
            consensus.ConfigureServices(builder.Services);
            builder.Services.AddSingleton(components.Volumes);
            builder.Services.AddSingleton(sp => new CoordinatorNode(options, consensus.Consensus, stateMachine, sp.GetRequiredService<IVolumeOperations>(),
                sp.GetRequiredService<ILoggerFactory>().CreateLogger<CoordinatorNode>()));
            builder.Services.AddSingleton(sp => new Operations.Rebalance.Rebalancer(sp.GetRequiredService<CoordinatorNode>(),
                components.Copier?.Invoke(sp) ?? new Operations.Rebalance.GrpcReplicaCopier(),
                sp.GetRequiredService<ILoggerFactory>().CreateLogger<Operations.Rebalance.Rebalancer>()));

            app = builder.Build();
            var node = app.Services.GetRequiredService<CoordinatorNode>();
            var forwarder = components.Forwarder?.Invoke(app.Services);
            app.Use(async (context, next) =>
            {
                try
                {
                    await next(context);
                    if (context.Response.StatusCode == 405 && !context.Response.HasStarted && !IsGrpc(context))
                    {
                        // Routing's own 405 (a known path, another method) has no body; SPEC wants the JSON error.
                        await new Problem(405, "method_not_allowed", $"{context.Request.Method} is not allowed on {context.Request.Path}; see SPEC.md for the API").WriteAsync(context);
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException || !context.RequestAborted.IsCancellationRequested)
                {
                    if (IsGrpc(context))
                    {
                        throw;
                    }
                    Log.RequestFailed(app.Logger, e, context.Request.Method, context.Request.Path);
                    await new Problem(500, "internal", "the coordinator failed to handle the request; see its log").WriteAsync(context);
                }
            });
            app.MapGrpcService<CoordinatorGrpcService>();
            consensus.MapEndpoints(app);
            KvEndpoints.Map(app, node, forwarder);
            StatusEndpoints.Map(app, node);
            Operations.Jobs.JobEndpoints.Map(app, node, forwarder);
            maintenanceVolumes = new Operations.GrpcVolumeMaintenance();
            maintenance = new Operations.ClusterMaintenance(node, maintenanceVolumes, app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<Operations.ClusterMaintenance>());
            Operations.MaintenanceEndpoints.Map(app, node, maintenance, forwarder);
            Operations.Rebalance.RebalanceEndpoints.Map(app, node, app.Services.GetRequiredService<Operations.Rebalance.Rebalancer>(), forwarder);
            app.MapFallback(context => new Problem(context.Request.Path.StartsWithSegments("/kv") ? 405 : 404,
                context.Request.Path.StartsWithSegments("/kv") ? "method_not_allowed" : "not_found",
                $"no route for {context.Request.Method} {context.Request.Path}; see SPEC.md for the API").WriteAsync(context));
            RegisterGauges(node);

            await app.StartAsync(cancellationToken);
            var boundHttp = httpListen!.IPEndPoint!;
            var boundGrpc = grpcListen!.IPEndPoint!;
            node.AdvertisedHttp = "http://" + (options.AdvertiseBind ?? Advertised(boundHttp));
            node.AdvertisedGrpc = options.AdvertiseGrpc ?? Advertised(boundGrpc);
            await consensus.StartAsync(cancellationToken);
            node.Start();
            maintenance.Start();
            var httpText = boundHttp.ToString();
            var grpcText = boundGrpc.ToString();
            Log.Serving(app.Logger, options.Id, httpText, grpcText, options.DbDirectory, stateMachine.AppliedIndex);
            return new CoordinatorServer(app, consensus, node, stateMachine, loggerFactory, boundHttp, boundGrpc) { _maintenance = maintenance, _maintenanceVolumes = maintenanceVolumes };
        }
        catch
        {
            if (maintenance != null)
            {
                await maintenance.DisposeAsync();
            }
            maintenanceVolumes?.Dispose();
            if (app != null)
            {
                await app.DisposeAsync();
            }
            if (consensus != null)
            {
                await consensus.DisposeAsync();
            }
            loggerFactory?.Dispose();
            stateMachine.Dispose();
            throw;
        }
    }

    /// <summary>Drains requests (up to 5 s), stops the consensus module, then closes the metadata.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _app.StopAsync();
        if (_maintenance != null)
        {
            await _maintenance.DisposeAsync();
        }
        await Node.DisposeAsync();
        _maintenanceVolumes?.Dispose();
        await _consensus.DisposeAsync();
        await _app.DisposeAsync();
        _consensusLogging.Dispose();
        StateMachine.Dispose();
    }

    /// <summary>Waits until the host is asked to stop (SIGTERM, Ctrl-C).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    private static bool IsGrpc(HttpContext context) =>
        context.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

    private static string Advertised(IPEndPoint bound) =>
        bound.Address.Equals(IPAddress.Any) || bound.Address.Equals(IPAddress.IPv6Any) ? $"{Dns.GetHostName()}:{bound.Port}" : bound.ToString();

    private static string Reachable(IPEndPoint bound) =>
        bound.Address.Equals(IPAddress.Any) ? $"127.0.0.1:{bound.Port}" : bound.Address.Equals(IPAddress.IPv6Any) ? $"[::1]:{bound.Port}" : bound.ToString();

    private static void RegisterGauges(CoordinatorNode node)
    {
        var m = node.Metrics;
        foreach (var family in RuntimeMetrics.Families)
        {
            m.Add(family);
        }
        m.Gauge("minikv_coord_raft_term", "The current Raft term.", () => [("", node.Consensus.Leader.Term)]);
        m.Gauge("minikv_coord_raft_is_leader", "1 while this node leads.", () => [("", node.Consensus.Leader.IsLeader ? 1 : 0)]);
        m.Gauge("minikv_coord_raft_applied_index", "The last log index applied to the metadata.", () => [("", node.StateMachine.AppliedIndex)]);
        m.Gauge("minikv_coord_write_proposals", "Raft proposals that carried writes, since start.", () => [("", node.BatchCounters.Proposals)]);
        m.Gauge("minikv_coord_proposed_writes", "Writes carried by those proposals, since start.", () => [("", node.BatchCounters.Writes)]);
        m.Gauge("minikv_coord_client_read_barriers", "ReadIndex rounds for client reads, and the reads they served, since start.", () =>
        {
            var (rounds, reads) = node.ReadBarrierCounters;
            return [("kind=\"rounds\"", rounds), ("kind=\"reads\"", reads)];
        });
        if (node.Volumes is Wiring.VolumeOperations operations)
        {
            m.Gauge("minikv_coord_value_cache_lookups", "Small-value cache lookups by result, since start (values too large to cache are not counted).", () =>
            {
                var (hits, misses) = operations.CacheCounters;
                return [("result=\"hit\"", hits), ("result=\"miss\"", misses)];
            });
            m.Gauge("minikv_coord_volume_batches", "Batched calls to volumes by kind, the items (transactions) they carried, and the commits that rode on PrepareBatch calls, since start.", () =>
            {
                var c = operations.BatchCounters;
                return
                [
                    ("kind=\"prepare\",count=\"calls\"", c.PrepareCalls), ("kind=\"prepare\",count=\"items\"", c.PrepareItems),
                    ("kind=\"commit\",count=\"calls\"", c.CommitCalls), ("kind=\"commit\",count=\"items\"", c.CommitItems),
                    ("kind=\"commit\",count=\"carried_by_prepare\"", c.CarriedCommits),
                    ("kind=\"abort\",count=\"calls\"", c.AbortCalls), ("kind=\"abort\",count=\"items\"", c.AbortItems),
                ];
            });
        }
        m.Gauge("minikv_coord_volumes", "Registered volumes by state.", () =>
        {
            var counts = new Dictionary<string, int>(StringComparer.Ordinal) { ["up"] = 0, ["down"] = 0, ["draining"] = 0 };
            foreach (var v in node.StateMachine.Registry.Volumes.Values)
            {
                counts[v.State switch { Metadata.Commands.VolumeState.Up => "up", Metadata.Commands.VolumeState.Down => "down", _ => "draining" }]++;
            }
            return counts.Select(c => ($"state=\"{c.Key}\"", (double)c.Value));
        });
    }
}

/// <summary>host:port parsing for listen flags. Stateless.</summary>
public static class Endpoints
{
    /// <summary>host:port, [v6]:port; "localhost" is loopback, "*" and "+" every interface; other names are resolved.</summary>
    public static IPEndPoint Parse(string text, string flag)
    {
        if (IPEndPoint.TryParse(text, out var endPoint) && text.Contains(':', StringComparison.Ordinal))
        {
            return endPoint;
        }
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), System.Globalization.CultureInfo.InvariantCulture, out var port) || port is < 0 or > 65535)
        {
            throw new ArgumentException($"{flag} '{text}' is not host:port (for example 0.0.0.0:5000)");
        }
        var host = text[..colon];
        if (host is "*" or "+")
        {
            return new IPEndPoint(IPAddress.Any, port);
        }
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            return new IPEndPoint(IPAddress.Loopback, port);
        }
        try
        {
            foreach (var address in Dns.GetHostAddresses(host))
            {
                if (address.AddressFamily == AddressFamily.InterNetwork)
                {
                    return new IPEndPoint(address, port);
                }
            }
            throw new ArgumentException($"{flag}: host '{host}' has no IPv4 address");
        }
        catch (SocketException e)
        {
            throw new ArgumentException($"{flag}: cannot resolve host '{host}': {e.Message}", e);
        }
    }
}
