namespace MiniKV.Consensus.Core;

/// <summary>The role a node plays in its current term.</summary>
public enum RaftRole : byte
{
    Follower = 1,
    PreCandidate = 2,
    Candidate = 3,
    Leader = 4,
}

/// <summary>Volatile state worth reporting (not persisted).</summary>
/// <param name="Leader">The leader this node knows of, or null.</param>
/// <param name="Role">This node's role.</param>
/// <param name="Term">The current term.</param>
public readonly record struct SoftState(string? Leader, RaftRole Role, long Term);

/// <summary>A confirmed read: once the local state machine has applied <paramref name="Index"/>, a read
/// started before the request carrying <paramref name="Context"/> is linearizable.</summary>
public readonly record struct ReadState(long Index, ReadOnlyMemory<byte> Context);

/// <summary>
/// What the driver must do after feeding the node inputs. Process a Ready in this order, then call
/// <see cref="RaftNode.Advance"/>:
/// <list type="number">
/// <item>Persist <see cref="Snapshot"/> (install), <see cref="Entries"/> (append) and <see cref="HardState"/>, then
/// make them durable with one sync. Nothing below may happen before that sync returns.</item>
/// <item>Send <see cref="Messages"/>. Votes, acknowledgements and the leader's own claims in them depend on
/// the state persisted in step 1 — this is the one rule that keeps a crash from un-saying a promise.
/// One exception (thesis §10.2.1): when <see cref="TermOrVoteChanged"/> is false, the messages for which
/// <see cref="MaySendBeforeSync"/> holds (a leader's Append, Heartbeat, Snapshot, TimeoutNow) may be sent
/// before the sync, so the followers' disk writes overlap the leader's. They promise nothing about the
/// leader's own log: the leader counts its own copy towards a quorum only after <see cref="RaftNode.Advance"/>
/// reports it durable, and its term was persisted before it could lead.</item>
/// <item>Apply <see cref="CommittedEntries"/> in order (they are always persisted by step 1). Another exception:
/// the first <see cref="DurableCommittedCount"/> of them were made durable by an earlier Ready's sync, and may be
/// applied before this Ready's sync — a leader then answers the proposers of entries committed by the
/// acknowledgements it just received without first waiting for the disk write of the entries proposed since.
/// Applying promises nothing to other nodes: a committed entry is durable on a quorum already.</item>
/// <item>Serve <see cref="ReadStates"/> once the applied index reaches each one's index.</item>
/// </list>
/// </summary>
public sealed class Ready
{
    /// <summary>Set when role, leader or term changed since the last Ready.</summary>
    public SoftState? SoftState { get; init; }

    /// <summary>Set when the hard state changed since the last persisted one.</summary>
    public HardState? HardState { get; init; }

    /// <summary>A snapshot received from the leader that replaces the log; install it before appending <see cref="Entries"/>.</summary>
    public SnapshotMetadata? Snapshot { get; init; }

    /// <summary>Entries to append to durable storage (an entry whose index exists replaces it and all after it).</summary>
    public IReadOnlyList<Entry> Entries { get; init; } = [];

    /// <summary>Messages to send after the sync.</summary>
    public IReadOnlyList<Message> Messages { get; init; } = [];

    /// <summary>Entries newly known committed, to apply in order.</summary>
    public IReadOnlyList<Entry> CommittedEntries { get; init; } = [];

    /// <summary>Confirmed read indexes, in request order.</summary>
    public IReadOnlyList<ReadState> ReadStates { get; init; } = [];

    /// <summary>Whether this Ready changes the persisted term or vote (then every message waits for the sync).</summary>
    public bool TermOrVoteChanged { get; init; }

    /// <summary>
    /// How many of the first <see cref="CommittedEntries"/> the driver may apply before this Ready's sync:
    /// those at or below <paramref name="durableIndex"/> (the last log index an earlier sync made durable) that
    /// this Ready's <see cref="Entries"/> do not replace. None when a snapshot is being installed.
    /// </summary>
    public int DurableCommittedCount(long durableIndex)
    {
        if (CommittedEntries.Count == 0 || Snapshot is not null)
        {
            return 0;
        }

        long limit = Entries.Count > 0 ? Math.Min(durableIndex, Entries[0].Index - 1) : durableIndex;
        return (int)Math.Clamp(limit - CommittedEntries[0].Index + 1, 0, CommittedEntries.Count);
    }

    /// <summary>Whether <paramref name="m"/> may be sent before the sync when <see cref="TermOrVoteChanged"/> is false.</summary>
    public static bool MaySendBeforeSync(Message m) =>
        m.Type is MessageType.Append or MessageType.Heartbeat or MessageType.Snapshot or MessageType.TimeoutNow;

    /// <summary>Whether the driver must sync storage before sending: true when the term, the vote, the log or
    /// the snapshot changed. A hard state that only moved the commit index may be written without a sync
    /// (a lost commit index is re-learned from the leader).</summary>
    public bool MustSync { get; init; }
}
