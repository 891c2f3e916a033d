using System.Collections.Concurrent;
using System.Net;
using Grpc.Net.Client;
using VolumeClient = MiniKV.Protocol.V1.Volume.VolumeClient;

namespace MiniKV.Coordinator.Volumes;

/// <summary>
/// One gRPC channel per volume gRPC address, created on first use and reused for every call after (h2c with
/// prior knowledge: an address without a scheme is dialed as http://host:port over HTTP/2).
/// Thread-safety: every member is safe to call from any thread; <see cref="Dispose"/> once, when no call is
/// in flight any more (calls on a disposed pool throw <see cref="ObjectDisposedException"/>).
/// </summary>
public sealed class VolumeClientPool : IDisposable
{
    /// <summary>A PrepareBatch carries up to 16 MiB of values plus framing.</summary>
    public const int MaxSendMessageSize = 20 << 20;

    /// <summary>Read chunks are 256 KiB; batched answers are small. Room for a future larger chunk.</summary>
    public const int MaxReceiveMessageSize = 32 << 20;

    private readonly ConcurrentDictionary<string, Lazy<Entry>> _entries = new(StringComparer.Ordinal);
    private readonly TimeSpan _connectTimeout;
    private volatile bool _disposed;

    /// <param name="connectTimeout">How long a connection attempt to a volume may take before the call fails as
    /// unavailable; short, so a write moves on to another volume quickly. Default 2 s.</param>
    public VolumeClientPool(TimeSpan? connectTimeout = null) => _connectTimeout = connectTimeout ?? TimeSpan.FromSeconds(2);

    /// <summary>The client for a volume's gRPC address (host:port or URL).</summary>
    public VolumeClient Client(string grpcAddress) => Get(grpcAddress).Client;

    /// <summary>The channel for a volume's gRPC address (host:port or URL).</summary>
    public GrpcChannel Channel(string grpcAddress) => Get(grpcAddress).Channel;

    /// <summary>
    /// Closes and forgets the channel of an address (a volume that moved or left for good); a later call dials
    /// again. Calls in flight on it fail.
    /// </summary>
    public void Forget(string grpcAddress)
    {
        if (_entries.TryRemove(grpcAddress, out var entry) && entry.IsValueCreated)
        {
            entry.Value.Channel.Dispose();
        }
    }

    /// <summary>host:port → http://host:port; a URL stays as it is.</summary>
    public static Uri ToUri(string address) =>
        new(address.Contains("://", StringComparison.Ordinal) ? address : "http://" + address);

    private Entry Get(string address)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _entries.GetOrAdd(address, a => new Lazy<Entry>(() => Create(a))).Value;
    }

    private Entry Create(string address)
    {
        var handler = new SocketsHttpHandler
        {
            // Kestrel allows 100 concurrent streams per connection; more concurrent calls open more connections
            // instead of queueing behind the first one.
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = _connectTimeout,
            // A volume that vanished without closing its sockets (power loss, partition) is noticed by pings.
            KeepAlivePingDelay = TimeSpan.FromSeconds(15),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            UseProxy = false,
            AutomaticDecompression = DecompressionMethods.None,
            // Large reads: start each stream with a window big enough for a few 256 KiB chunks (it grows on its own).
            InitialHttp2StreamWindowSize = 1 << 20,
        };
        var channel = GrpcChannel.ForAddress(ToUri(address), new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxSendMessageSize = MaxSendMessageSize,
            MaxReceiveMessageSize = MaxReceiveMessageSize,
        });
        return new Entry(channel, new VolumeClient(channel));
    }

    public void Dispose()
    {
        _disposed = true;
        foreach (var entry in _entries.Values)
        {
            if (entry.IsValueCreated)
            {
                entry.Value.Channel.Dispose();
            }
        }
        _entries.Clear();
    }

    private sealed record Entry(GrpcChannel Channel, VolumeClient Client);
}
