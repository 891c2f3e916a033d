namespace MiniKV.Consensus;

/// <summary>A point-in-time copy of the state machine that can be streamed to a follower.</summary>
public interface IStateMachineSnapshot : IDisposable
{
    /// <summary>The last applied index the snapshot contains.</summary>
    long Index { get; }

    /// <summary>Opens the snapshot's bytes for reading; may be called more than once (one per follower).</summary>
    Stream OpenRead();
}

/// <summary>
/// The application replicated by Raft (for minikv: the coordinators' metadata). Called by the driver's
/// apply loop only — one call at a time, in log order — so implementations need no locking against
/// themselves; reads from other threads are the implementation's concern.
/// </summary>
public interface IRaftStateMachine
{
    /// <summary>The last index whose effects are durable in the state machine. After a restart the driver
    /// re-applies committed entries after it, so applying must be idempotent per index (skip index ≤ AppliedIndex).</summary>
    long AppliedIndex { get; }

    /// <summary>
    /// Applies committed entries in order (every kind, so the applied index advances past no-ops and
    /// membership changes) and makes them and the new applied index durable together. Returns one result
    /// per entry (null for entries without one); the driver hands it to the proposer on this node.
    /// Must be deterministic: every node computes the same state from the same entries.
    /// </summary>
    IReadOnlyList<object?> Apply(IReadOnlyList<Entry> entries);

    /// <summary>Takes a snapshot of the state at <see cref="AppliedIndex"/>.</summary>
    IStateMachineSnapshot CreateSnapshot();

    /// <summary>Replaces the whole state with a snapshot received from the leader (as produced by
    /// <see cref="IStateMachineSnapshot.OpenRead"/>) whose last index is <paramref name="index"/>.</summary>
    void RestoreSnapshot(long index, Stream data);
}
