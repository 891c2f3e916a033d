using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MiniKV.Protocol.V1;

namespace MiniKV.Consensus.Grpc;

/// <summary>
/// <see cref="IRaftTransport"/> over gRPC (proto/minikv/internal/v1/raft.proto). Outbound: one long-lived
/// client-streaming call per peer, fed by a bounded queue that a background loop drains into one write per batch;
/// a broken stream is reopened with exponential backoff. Snapshots go on a separate streamed call each. Inbound:
/// <see cref="RaftTransportService"/> (mapped into the host's Kestrel) hands messages to <see cref="Handler"/>.
/// Thread-safe; <see cref="Send"/> never blocks. docs/consensus-io.md describes the behaviour.
/// </summary>
public sealed class GrpcRaftTransport : IRaftTransport
{
    private readonly ConcurrentDictionary<string, PeerConnection> _peers = new(StringComparer.Ordinal);
    private readonly Lock _peersLock = new();
    private long _messagesSent;
    private long _batchesSent;
    private long _messagesDropped;
    private long _reconnects;
    private long _snapshotsSent;
    private long _snapshotsFailed;
    private long _messagesReceived;
    private long _receiveErrors;
    private int _disposed;

    public GrpcRaftTransport(string nodeId, GrpcRaftTransportOptions? options = null, ILogger<GrpcRaftTransport>? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(nodeId);
        NodeId = nodeId;
        Options = options ?? new GrpcRaftTransportOptions();
        Logger = logger ?? NullLogger<GrpcRaftTransport>.Instance;
    }

    /// <summary>This node's id: the sender of every message, and what Hello answers.</summary>
    public string NodeId { get; }

    public GrpcRaftTransportOptions Options { get; }

    /// <summary>Receives inbound messages. Until it is set, inbound messages are dropped and snapshots refused (UNAVAILABLE).</summary>
    public IRaftMessageHandler? Handler { get; set; }

    /// <summary>Raised on a background thread when a snapshot stream to a peer ends: (peer id, snapshot index, whether the peer acknowledged it).</summary>
    public event Action<string, long, bool>? SnapshotCompleted;

    /// <summary>Raised on a background thread when the stream to a peer breaks or cannot be opened (peer id); a follower's
    /// host uses it to notice a dead leader before its election timeout (<c>RaftHost.ReportUnreachable</c>).</summary>
    public event Action<string>? PeerUnreachable;

    /// <summary>Raised when a node introduces itself through Hello (its id, and the remote address gRPC reports).</summary>
    public event Action<string, string>? HelloReceived;

    internal ILogger Logger { get; }

    public RaftTransportCounters GetCounters() => new(
        Interlocked.Read(ref _messagesSent),
        Interlocked.Read(ref _batchesSent),
        Interlocked.Read(ref _messagesDropped),
        Interlocked.Read(ref _reconnects),
        Interlocked.Read(ref _snapshotsSent),
        Interlocked.Read(ref _snapshotsFailed),
        Interlocked.Read(ref _messagesReceived),
        Interlocked.Read(ref _receiveErrors));

    /// <summary>The peers and their addresses, as set by <see cref="SetPeerAddress"/>.</summary>
    public IReadOnlyDictionary<string, string> PeerAddresses
    {
        get
        {
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (id, peer) in _peers)
            {
                result[id] = peer.Address;
            }
            return result;
        }
    }

    public void Send(Message message, IStateMachineSnapshot? snapshot = null)
    {
        if (Volatile.Read(ref _disposed) != 0 || !_peers.TryGetValue(message.To, out var peer))
        {
            Interlocked.Increment(ref _messagesDropped);
            return;
        }
        if (message.Type == MessageType.Snapshot)
        {
            if (snapshot is null)
            {
                throw new ArgumentException("a Snapshot message is sent with its snapshot", nameof(snapshot));
            }
            peer.SendSnapshot(message, snapshot);
            return;
        }
        peer.Enqueue(message);
    }

    public void SetPeerAddress(string nodeId, string address)
    {
        ArgumentException.ThrowIfNullOrEmpty(nodeId);
        ArgumentException.ThrowIfNullOrEmpty(address);
        if (nodeId == NodeId)
        {
            throw new ArgumentException($"'{nodeId}' is this node", nameof(nodeId));
        }
        PeerConnection? replaced = null;
        lock (_peersLock)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            if (_peers.TryGetValue(nodeId, out var existing))
            {
                if (existing.Address == address)
                {
                    return;
                }
                replaced = existing;
            }
            _peers[nodeId] = new PeerConnection(this, nodeId, address);
        }
        replaced?.DisposeInBackground();
    }

    public void RemovePeer(string nodeId)
    {
        PeerConnection? removed;
        lock (_peersLock)
        {
            _peers.TryRemove(nodeId, out removed);
        }
        removed?.DisposeInBackground();
    }

    /// <summary>
    /// Learns the node ids behind <paramref name="addresses"/> (host:port, as --peers gives them) by calling Hello on
    /// each, retrying with backoff, and registers every answer with <see cref="SetPeerAddress"/>. Returns when every
    /// address answered or <paramref name="timeout"/> passed, with the answers so far (address → node id); the caller
    /// compares its count with the addresses. An address that turns out to be this node (or another node using this
    /// node's id) is an <see cref="InvalidOperationException"/>: that is a configuration error, not a transient one.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, string>> DiscoverPeersAsync(IReadOnlyList<string> addresses, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        var distinct = addresses.Distinct(StringComparer.Ordinal).ToArray();
        var answers = await Task.WhenAll(distinct.Select(a => HelloUntilAnsweredAsync(a, deadline.Token)));
        cancellationToken.ThrowIfCancellationRequested();
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < distinct.Length; i++)
        {
            if (answers[i] is { } id)
            {
                result[distinct[i]] = id;
                SetPeerAddress(id, distinct[i]);
                Log.Discovered(Logger, distinct[i], id);
            }
        }
        return result;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        PeerConnection[] peers;
        lock (_peersLock)
        {
            peers = [.. _peers.Values];
            _peers.Clear();
        }
        foreach (var peer in peers)
        {
            await peer.DisposeAsync();
        }
    }

    internal static Uri ToUri(string address) =>
        address.Contains("://", StringComparison.Ordinal) ? new Uri(address) : new Uri("http://" + address);

    internal GrpcChannel CreateChannel(string address) => GrpcChannel.ForAddress(ToUri(address), new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler
        {
            ConnectTimeout = Options.ConnectTimeout,
            KeepAlivePingDelay = Options.KeepAlivePing,
            KeepAlivePingTimeout = Options.KeepAlivePing,
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            EnableMultipleHttp2Connections = true,
        },
        MaxReceiveMessageSize = Options.MaxReceiveMessageSize,
        // The channel's own reconnect backoff (1 s doubling to 2 min by default) would otherwise sit under ours and
        // keep a restarted peer unreachable for seconds.
        InitialReconnectBackoff = Options.MinBackoff,
        MaxReconnectBackoff = Options.MaxBackoff,
    });

    internal void CountSent(int messages)
    {
        Interlocked.Add(ref _messagesSent, messages);
        Interlocked.Increment(ref _batchesSent);
    }

    internal void CountDropped(long messages) => Interlocked.Add(ref _messagesDropped, messages);
    internal void CountReconnect() => Interlocked.Increment(ref _reconnects);
    internal void CountReceived(int messages) => Interlocked.Add(ref _messagesReceived, messages);
    internal void CountReceiveError() => Interlocked.Increment(ref _receiveErrors);

    internal void OnSnapshotCompleted(string peer, long index, bool ok)
    {
        Interlocked.Increment(ref ok ? ref _snapshotsSent : ref _snapshotsFailed);
        SnapshotCompleted?.Invoke(peer, index, ok);
    }

    internal void OnPeerUnreachable(string nodeId) => PeerUnreachable?.Invoke(nodeId);

    internal void OnHello(string nodeId, string remote) => HelloReceived?.Invoke(nodeId, remote);

    private async Task<string?> HelloUntilAnsweredAsync(string address, CancellationToken cancellationToken)
    {
        using var channel = CreateChannel(address);
        var client = new RaftTransport.RaftTransportClient(channel);
        var backoff = Options.MinBackoff;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var answer = await client.HelloAsync(new RaftHelloRequest { NodeId = NodeId },
                    deadline: DateTime.UtcNow + Options.HelloTimeout, cancellationToken: cancellationToken);
                if (answer.NodeId.Length == 0 || answer.NodeId == NodeId)
                {
                    throw new InvalidOperationException($"peer {address} answered with node id '{answer.NodeId}', which is this node's or empty");
                }
                return answer.NodeId;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
            {
                throw new InvalidOperationException($"peer {address} refused this node: {e.Status.Detail}", e);
            }
            catch (RpcException) when (!cancellationToken.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(backoff, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    return null;
                }
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, Options.MaxBackoff.Ticks));
            }
            catch (RpcException)
            {
                return null;
            }
            catch (OperationCanceledException)
            {
                return null;
            }
        }
        return null;
    }
}
