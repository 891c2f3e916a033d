namespace MiniKV.Consensus;

/// <summary>The Raft messages exchanged between nodes (the shape of etcd raft's).</summary>
public enum MessageType : byte
{
    PreVote = 1,
    PreVoteResponse = 2,
    Vote = 3,
    VoteResponse = 4,
    /// <summary>Leader → follower: entries after (<see cref="Message.LogTerm"/>, <see cref="Message.Index"/>), and the commit index.</summary>
    Append = 5,
    /// <summary>Follower → leader: accepted up to <see cref="Message.Index"/>, or <see cref="Message.Reject"/> with <see cref="Message.RejectHint"/>.</summary>
    AppendResponse = 6,
    Heartbeat = 7,
    HeartbeatResponse = 8,
    /// <summary>Leader → follower: install <see cref="Message.Snapshot"/>; the transport streams the state machine's bytes with it.</summary>
    Snapshot = 9,
    /// <summary>Leader → transfer target: start an election now, skipping pre-vote.</summary>
    TimeoutNow = 10,
    /// <summary>Follower → leader: a read index request carrying <see cref="Message.Context"/>.</summary>
    ReadIndex = 11,
    ReadIndexResponse = 12,
}

/// <summary>
/// One Raft message. Created by the core, immutable once handed out; the transport serializes it.
/// Fields unused by a <see cref="Type"/> keep their defaults.
/// </summary>
public sealed record Message
{
    public required MessageType Type { get; init; }
    public required string From { get; init; }
    public required string To { get; init; }
    public long Term { get; init; }

    /// <summary>Append: term of the entry at <see cref="Index"/>. Vote/PreVote: term of the candidate's last entry.</summary>
    public long LogTerm { get; init; }

    /// <summary>Append: index before <see cref="Entries"/>. AppendResponse: last matching index. Vote: candidate's last index. ReadIndexResponse: the read index.</summary>
    public long Index { get; init; }

    public IReadOnlyList<Entry> Entries { get; init; } = [];

    /// <summary>The sender's commit index (Append, Heartbeat).</summary>
    public long Commit { get; init; }

    public bool Reject { get; init; }

    /// <summary>On a rejected Append: the follower's last index (or a conflict hint) so the leader can back off fast.</summary>
    public long RejectHint { get; init; }

    /// <summary>Snapshot messages: what is being installed.</summary>
    public SnapshotMetadata? Snapshot { get; init; }

    /// <summary>ReadIndex / Heartbeat: an opaque request context echoed back.</summary>
    public ReadOnlyMemory<byte> Context { get; init; }
}
