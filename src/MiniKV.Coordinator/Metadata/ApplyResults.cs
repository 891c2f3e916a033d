namespace MiniKV.Coordinator.Metadata;

/// <summary>How one write of a batch ended at its commit point.</summary>
public enum WriteStatus : byte
{
    /// <summary>Applied; <see cref="WriteOutcome.Version"/> is the key's new version (0 for a delete).</summary>
    Applied = 1,

    /// <summary>The write's condition (If-Match / If-None-Match) did not hold; nothing changed.</summary>
    PreconditionFailed = 2,

    /// <summary>A delete of a key that does not exist; nothing changed.</summary>
    NotFound = 3,

    /// <summary>The write lost a race it cannot win: its version is not above the key's current one, or it was
    /// begun under an earlier leader's term. Nothing changed; the transaction is recorded aborted.</summary>
    Conflict = 4,
}

/// <summary>The outcome of one write.</summary>
/// <param name="Status">How it ended.</param>
/// <param name="Version">The key's version after the write (the new one when applied).</param>
/// <param name="Previous">The record the write replaced or deleted, when there was one (its volumes hold old copies).</param>
public readonly record struct WriteOutcome(WriteStatus Status, ulong Version, KeyRecord? Previous)
{
    /// <summary>The record an applied PUT stored, as a later read returns it; null otherwise.</summary>
    public KeyRecord? Written { get; init; }
}

/// <summary>What a <see cref="Commands.WriteBatchCommand"/> entry returns: one outcome per write, in order.</summary>
public sealed record WriteBatchResult(IReadOnlyList<WriteOutcome> Outcomes);

/// <summary>What a <see cref="Commands.RelocateKeysCommand"/> entry returns: per relocation, whether it applied (false: the key changed or is gone).</summary>
public sealed record RelocateResult(IReadOnlyList<bool> Applied);

/// <summary>A rebalance or drain begun (its shard lists already switched) and not yet ended. Immutable.</summary>
/// <param name="JobId">The job that began it.</param>
/// <param name="AtUnixMs">When it began.</param>
/// <param name="Shards">How many shards' lists it changed.</param>
public sealed record RebalanceInProgress(string JobId, long AtUnixMs, int Shards);
