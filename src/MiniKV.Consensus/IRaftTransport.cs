namespace MiniKV.Consensus;

/// <summary>Receives what the transport delivers; implemented by the driver.</summary>
public interface IRaftMessageHandler
{
    /// <summary>A message arrived. Must not block: the handler queues it for the Raft loop.</summary>
    void OnMessage(Message message);

    /// <summary>A Snapshot message arrived with its data. Returns when the state machine has restored it
    /// (and the message has been handed to the core), so the transport can acknowledge the stream.</summary>
    Task OnSnapshotAsync(Message message, Stream data, CancellationToken cancellationToken);
}

/// <summary>
/// Carries messages between nodes. Thread-safe. Sending never blocks the caller and is best effort:
/// Raft tolerates loss, so a message to an unreachable peer is dropped (and counted), and the transport
/// reconnects in the background with backoff.
/// </summary>
public interface IRaftTransport : IAsyncDisposable
{
    /// <summary>Queues a message to <see cref="Message.To"/>. Snapshot messages are sent with the bytes of
    /// <paramref name="snapshot"/> streamed in chunks; it is null for every other type.</summary>
    void Send(Message message, IStateMachineSnapshot? snapshot = null);

    /// <summary>Sets or changes where a peer is reached (from --peers, or a membership change).</summary>
    void SetPeerAddress(string nodeId, string address);

    /// <summary>Forgets a removed peer and closes its connection.</summary>
    void RemovePeer(string nodeId);
}
