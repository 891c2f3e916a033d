namespace MiniKV.Consensus.Grpc;

/// <summary>Tuning of <see cref="GrpcRaftTransport"/>. The defaults suit 3–5 coordinators on a LAN or loopback.</summary>
public sealed record GrpcRaftTransportOptions
{
    /// <summary>Messages queued per peer before new ones are dropped (and counted). Raft retransmits what is lost.</summary>
    public int QueueCapacity { get; init; } = 4096;

    /// <summary>A batch stops growing once its entry data reaches this size (a single larger message is sent alone).</summary>
    public int MaxBatchBytes { get; init; } = 1 << 20;

    /// <summary>Snapshot bytes per streamed chunk.</summary>
    public int SnapshotChunkSize { get; init; } = 1 << 20;

    /// <summary>First wait after a failed connection; doubles per failure up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan MinBackoff { get; init; } = TimeSpan.FromMilliseconds(20);

    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>TCP connect timeout; a peer that does not answer within it counts as down until the next attempt.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>HTTP/2 keep-alive pings on idle connections, so a silently vanished peer is noticed within about twice this.</summary>
    public TimeSpan KeepAlivePing { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Deadline of one Hello attempt in <see cref="GrpcRaftTransport.DiscoverPeersAsync"/>.</summary>
    public TimeSpan HelloTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Largest message the service accepts (an Append batch or a snapshot chunk); see AddRaftTransport.</summary>
    public int MaxReceiveMessageSize { get; init; } = 64 << 20;
}

/// <summary>A snapshot of the transport's counters, for /metrics. Every count is since the transport was created.</summary>
/// <param name="MessagesSent">Messages written to a peer's stream.</param>
/// <param name="BatchesSent">Stream writes (each carries one or more messages).</param>
/// <param name="MessagesDropped">Messages not delivered: queue full, peer unknown, or lost with a broken stream.</param>
/// <param name="Reconnects">Streams that broke and were opened again.</param>
/// <param name="SnapshotsSent">Snapshots the recipient acknowledged.</param>
/// <param name="SnapshotsFailed">Snapshots that failed or were refused (one already in flight to that peer).</param>
/// <param name="MessagesReceived">Messages delivered to the handler.</param>
/// <param name="ReceiveErrors">Inbound streams ended with an error status (malformed input, CRC mismatch, wrong recipient).</param>
public readonly record struct RaftTransportCounters(
    long MessagesSent,
    long BatchesSent,
    long MessagesDropped,
    long Reconnects,
    long SnapshotsSent,
    long SnapshotsFailed,
    long MessagesReceived,
    long ReceiveErrors);
