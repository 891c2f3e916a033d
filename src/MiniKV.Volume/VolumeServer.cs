using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using MiniKV.Common;
using MiniKV.Storage;
using MiniKV.Volume.Cluster;
using MiniKV.Volume.Grpc;
using MiniKV.Volume.Http;
using MiniKV.Volume.Metrics;

namespace MiniKV.Volume;

/// <summary>
/// A volume server that can run inside any process: it opens the store, serves gRPC (HTTP/2 only, h2c) on
/// <see cref="VolumeServerOptions.Grpc"/> and HTTP/1.1 on <see cref="VolumeServerOptions.Bind"/>, and
/// registers with the coordinators. Ports 0 bind free ports; <see cref="HttpEndPoint"/> and
/// <see cref="GrpcEndPoint"/> tell which. Thread-safety: start once, dispose once; the properties may be read anywhere.
/// </summary>
public sealed class VolumeServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly PeerChannels _peers;
    private int _disposed;

    private VolumeServer(WebApplication app, VolumeNode node, PeerChannels peers, IPEndPoint http, IPEndPoint grpc)
    {
        _app = app;
        Node = node;
        _peers = peers;
        HttpEndPoint = http;
        GrpcEndPoint = grpc;
    }

    public VolumeNode Node { get; }
    public BlobStore Store => Node.Store;

    /// <summary>The bound HTTP endpoint (the real port when the option said 0).</summary>
    public IPEndPoint HttpEndPoint { get; }

    /// <summary>The bound gRPC endpoint.</summary>
    public IPEndPoint GrpcEndPoint { get; }

    /// <summary>http://host:port of the bound HTTP endpoint (loopback when bound to every interface).</summary>
    public Uri HttpUri => new("http://" + Reachable(HttpEndPoint));

    /// <summary>http://host:port of the bound gRPC endpoint, for <c>GrpcChannel.ForAddress</c>.</summary>
    public Uri GrpcUri => new("http://" + Reachable(GrpcEndPoint));

    /// <summary>
    /// File writes and fsyncs block a pool thread for their whole duration (.NET runs file I/O synchronously on the
    /// pool on Linux), and the pool starts with one thread per core and adds about one per half second when all are
    /// blocked. A few concurrent large writes then starve every other request until the pool has grown: a fresh
    /// volume copied at 85-100 MB/s in its first seconds and 170-300 MB/s later (bench pull-load). Start with enough.
    /// </summary>
    private static void EnsureThreadPoolMinimum()
    {
        const int Workers = 32;
        ThreadPool.GetMinThreads(out var workers, out var io);
        if (workers < Workers)
        {
            ThreadPool.SetMinThreads(Workers, io);
        }
    }

    public static async Task<VolumeServer> StartAsync(VolumeServerOptions options, CancellationToken cancellationToken = default)
    {
        var bind = ParseEndPoint(options.Bind, "--bind");
        var grpc = ParseEndPoint(options.Grpc, "--grpc");
        Directory.CreateDirectory(options.DataDirectory);
        if (options.WalDirectory != null)
        {
            Directory.CreateDirectory(options.WalDirectory);
        }
        EnsureThreadPoolMinimum();
        var store = await BlobStore.OpenAsync(options.ToStoreOptions(), cancellationToken);
        // Prepares that were undecided when the volume stopped: the coordinators are asked about these.
        var undecided = store.ListPrepared();
        WebApplication? app = null;
        var peers = new PeerChannels();
        try
        {
            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
            {
                Args = [],
                ApplicationName = "minikv-volume",
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
                k.Listen(bind, lo =>
                {
                    // HTTP/1.1: without TLS, Kestrel speaks HTTP/2 only on an HTTP/2-only port (prior knowledge), which
                    // browsers and curl do not use; see docs/volume.md.
                    lo.Protocols = HttpProtocols.Http1;
                    httpListen = lo;
                });
                k.Listen(grpc, lo =>
                {
                    lo.Protocols = HttpProtocols.Http2; // h2c needs prior knowledge: HTTP/2 only
                    grpcListen = lo;
                });
            });

            var metrics = new MetricsRegistry();
            var node = new VolumeNode(options, store, metrics);
            builder.Services.AddSingleton(node);
            builder.Services.AddSingleton(metrics);
            builder.Services.AddSingleton(peers);
            builder.Services.AddSingleton<CallRecorder>();
            builder.Services.AddGrpc(o =>
            {
                o.Interceptors.Add<ErrorInterceptor>();
                o.MaxReceiveMessageSize = 20 << 20; // PrepareBatch: up to 16 MiB of values plus framing
                o.EnableDetailedErrors = false;
            });

            app = builder.Build();
            app.UseWhen(static c => !IsGrpc(c), branch => branch.UseMiddleware<HttpErrorHandler>());
            app.MapGrpcService<VolumeService>();
            BlobEndpoints.Map(app, node);
            AdminEndpoints.Map(app, node);
            RegisterStoreMetrics(node);

            await app.StartAsync(cancellationToken);
            var boundHttp = httpListen!.IPEndPoint!;
            var boundGrpc = grpcListen!.IPEndPoint!;
            node.AdvertisedHttp = options.AdvertiseBind ?? Advertised(boundHttp);
            node.AdvertisedGrpc = options.AdvertiseGrpc ?? Advertised(boundGrpc);

            if (options.Coordinators.Count > 0)
            {
                var link = new CoordinatorLink(node, undecided, app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<CoordinatorLink>());
                node.Link = link;
                link.Start();
            }
            Log.Serving(app.Logger, options.Id, boundHttp.ToString(), boundGrpc.ToString(), options.DataDirectory, store.GetStats().Keys, undecided.Count);
            return new VolumeServer(app, node, peers, boundHttp, boundGrpc);
        }
        catch
        {
            if (app != null)
            {
                await app.DisposeAsync();
            }
            peers.Dispose();
            await store.DisposeAsync();
            throw;
        }
    }

    /// <summary>Stops registration, drains requests (up to 5 s), then closes the store cleanly (an index snapshot is written).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        if (Node.Link is { } link)
        {
            await link.DisposeAsync();
        }
        await _app.StopAsync();
        await _app.DisposeAsync();
        _peers.Dispose();
        await Node.Store.DisposeAsync();
    }

    /// <summary>Waits until the host is asked to stop (SIGTERM, Ctrl-C).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>host:port, [v6]:port; "localhost" is loopback, "*" and "+" every interface; other names are resolved.</summary>
    public static IPEndPoint ParseEndPoint(string text, string flag)
    {
        if (IPEndPoint.TryParse(text, out var endPoint) && text.Contains(':', StringComparison.Ordinal))
        {
            return endPoint;
        }
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), System.Globalization.CultureInfo.InvariantCulture, out var port) || port is < 0 or > 65535)
        {
            throw new ArgumentException($"{flag} '{text}' is not host:port (for example 0.0.0.0:6000)");
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
            var addresses = Dns.GetHostAddresses(host);
            foreach (var address in addresses)
            {
                if (address.AddressFamily == AddressFamily.InterNetwork)
                {
                    return new IPEndPoint(address, port);
                }
            }
            return addresses.Length > 0 ? new IPEndPoint(addresses[0], port) : throw new ArgumentException($"{flag}: host '{host}' has no address");
        }
        catch (SocketException e)
        {
            throw new ArgumentException($"{flag}: cannot resolve host '{host}': {e.Message}", e);
        }
    }

    private static bool IsGrpc(HttpContext context) =>
        context.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

    /// <summary>The bound address as others should dial it: a wildcard bind advertises the machine's host name.</summary>
    private static string Advertised(IPEndPoint bound) =>
        bound.Address.Equals(IPAddress.Any) || bound.Address.Equals(IPAddress.IPv6Any) ? $"{Dns.GetHostName()}:{bound.Port}" : bound.ToString();

    private static string Reachable(IPEndPoint bound) =>
        bound.Address.Equals(IPAddress.Any) ? $"127.0.0.1:{bound.Port}" : bound.Address.Equals(IPAddress.IPv6Any) ? $"[::1]:{bound.Port}" : bound.ToString();

    private static void RegisterStoreMetrics(VolumeNode node)
    {
        var m = node.Metrics;
        var store = node.Store;
        foreach (var family in RuntimeMetrics.Families)
        {
            m.AddCallback(family.Name, family.Help, family.Type, family.Read);
        }
        m.AddGauge("minikv_volume_keys", "Live keys held.", () => store.GetStats().Keys);
        m.AddGauge("minikv_volume_live_bytes", "Bytes of live records.", () => store.GetStats().LiveBytes);
        m.AddGauge("minikv_volume_disk_bytes", "Bytes of all segment files.", () => store.GetStats().DiskBytes);
        m.AddGauge("minikv_volume_segments", "Segment files.", () => store.GetStats().Segments);
        m.AddGauge("minikv_volume_prepared_transactions", "Prepared transactions awaiting Commit or Abort.", () => store.GetStats().PreparedTransactions);
        m.AddGauge("minikv_volume_read_cache_bytes", "Bytes held by the read cache.", () => store.GetStats().CacheBytes);
        m.AddGauge("minikv_volume_free_bytes", "Free bytes of the --data file system.", () => node.DiskSpace().Free);
        m.AddGauge("minikv_volume_registered", "1 while registered with the leading coordinator.", () => node.Registered ? 1 : 0);
        m.AddCounter("minikv_volume_corrupt_records_total", "Records that failed a CRC check since start.", () => store.GetStats().CorruptRecords);
        m.AddCounter("minikv_volume_fsyncs_total", "fsync calls since start.", () => store.GetStats().Fsyncs);
        m.AddCounter("minikv_volume_cache_hits_total", "Reads served by the read cache.", () => store.GetStats().CacheHits);
        m.AddCounter("minikv_volume_cache_misses_total", "Reads that went to disk.", () => store.GetStats().CacheMisses);
        m.AddCounter("minikv_volume_compaction_runs_total", "Compaction runs since start.", () => store.GetStats().CompactionRuns);
        m.AddCounter("minikv_volume_compacted_segments_total", "Segments rewritten by compaction.", () => store.GetStats().CompactedSegments);
        m.AddCounter("minikv_volume_compaction_reclaimed_bytes_total", "Bytes reclaimed by compaction.", () => store.GetStats().CompactionReclaimedBytes);
        m.AddCounter("minikv_volume_heartbeats_total", "Heartbeats accepted by the leading coordinator.", () => node.Link?.Heartbeats ?? 0);
    }
}
