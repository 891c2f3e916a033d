namespace MiniKV.Consensus;

/// <summary>How a proposal ended.</summary>
public enum ProposalStatus : byte
{
    /// <summary>Committed and applied on this node; <see cref="ProposalResult.Result"/> is the state machine's answer.</summary>
    Applied = 1,

    /// <summary>This node is not the leader (or stopped leading before appending it); nothing was appended. Safe to retry elsewhere.</summary>
    NotLeader = 2,

    /// <summary>Appended but the outcome is not known (leadership lost or timed out before commit). It may still commit.</summary>
    Unknown = 3,

    /// <summary>Refused by the leader without appending: a membership change while another is still pending,
    /// or one that does not fit the current membership (e.g. promoting a node that is not a learner).</summary>
    Rejected = 4,
}

/// <summary>The outcome of <see cref="IConsensus.ProposeAsync"/>.</summary>
/// <param name="Status">How it ended.</param>
/// <param name="Index">The log index it was applied at (0 unless <see cref="ProposalStatus.Applied"/>).</param>
/// <param name="Result">What <see cref="IRaftStateMachine.Apply"/> returned for it.</param>
/// <param name="LeaderHint">The leader this node knows of, for <see cref="ProposalStatus.NotLeader"/>.</param>
public readonly record struct ProposalResult(ProposalStatus Status, long Index, object? Result, string? LeaderHint);

/// <summary>Who leads, as this node sees it.</summary>
/// <param name="LeaderId">The leader's node id, or null while none is known.</param>
/// <param name="Term">The current term.</param>
/// <param name="IsLeader">Whether this node leads.</param>
public readonly record struct LeaderInfo(string? LeaderId, long Term, bool IsLeader);

/// <summary>
/// What the application (the coordinator) sees of a running Raft node. Thread-safe; every method may be
/// called from any thread.
/// </summary>
public interface IConsensus
{
    /// <summary>This node's id.</summary>
    string NodeId { get; }

    /// <summary>The current leader as this node sees it.</summary>
    LeaderInfo Leader { get; }

    /// <summary>Raised (on a background thread) whenever <see cref="Leader"/> changes.</summary>
    event Action<LeaderInfo>? LeaderChanged;

    /// <summary>
    /// Proposes a command. Completes when it is applied on this node, or with NotLeader / Unknown.
    /// A proposal with the same non-empty <paramref name="requestId"/> as one already applied is not applied
    /// again; the earlier result (if still remembered) or null is returned.
    /// Concurrent proposals are batched into one log append and one fsync.
    /// </summary>
    Task<ProposalResult> ProposeAsync(ReadOnlyMemory<byte> command, Guid requestId, CancellationToken cancellationToken);

    /// <summary>
    /// Linearizable read barrier (ReadIndex): completes once this node's state machine has applied
    /// everything committed at the moment of the call, confirmed by a quorum. Returns false if this node
    /// cannot serve it (not leader / no quorum) — the caller forwards to the leader.
    /// </summary>
    Task<bool> ReadBarrierAsync(CancellationToken cancellationToken);

    /// <summary>
    /// <see cref="ReadBarrierAsync"/> that a follower can pass too (etcd's follower ReadIndex): the follower asks its
    /// leader for the read index (the leader confirms it still leads with a quorum round) and completes once its own
    /// state machine has applied up to that index, so a read of the local state afterwards is linearizable. False
    /// when no leader is known or the leader does not answer in time. Without an override it is
    /// <see cref="ReadBarrierAsync"/> (leader only).
    /// </summary>
    Task<bool> ReadBarrierOnAnyMemberAsync(CancellationToken cancellationToken) => ReadBarrierAsync(cancellationToken);

    /// <summary>Transfers leadership to <paramref name="nodeId"/>; completes when it leads or the attempt failed.</summary>
    Task<bool> TransferLeadershipAsync(string nodeId, CancellationToken cancellationToken);

    /// <summary>Applies a single-server membership change through the log; completes when it is applied.</summary>
    Task<ProposalResult> ChangeMembershipAsync(ConfChange change, CancellationToken cancellationToken);

    /// <summary>Current members and their Raft addresses (for /admin/status).</summary>
    IReadOnlyList<(string NodeId, string Address, bool IsVoter)> Members { get; }

    /// <summary>
    /// Whether this node heard from member <paramref name="nodeId"/> within about an election timeout (a leader hears
    /// from every member; a follower only from its leader). Refreshed every tick. Without an override: this node and
    /// the leader it knows.
    /// </summary>
    bool HeardRecentlyFrom(string nodeId) => nodeId == NodeId || nodeId == Leader.LeaderId;
}
