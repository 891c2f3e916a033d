namespace MiniKV.Coordinator.Metadata.Commands;

/// <summary>What a write does to a key.</summary>
public enum WriteKind : byte
{
    Put = 1,
    Delete = 2,
}

/// <summary>The precondition a write checks at the commit point (when its entry is applied), from HTTP conditional headers.</summary>
public enum WriteCondition : byte
{
    None = 0,

    /// <summary><c>If-Match: "etag"</c>: the key exists and its current ETag is <see cref="KeyWrite.ConditionEtag"/>.</summary>
    IfMatch = 1,

    /// <summary><c>If-None-Match: *</c>: the key does not exist.</summary>
    IfNoneMatchAny = 2,

    /// <summary><c>If-Match: *</c>: the key exists.</summary>
    IfMatchAny = 3,
}

/// <summary>A volume's state in the registry. Heartbeats themselves stay out of the log; only changes of state are logged.</summary>
public enum VolumeState : byte
{
    Up = 1,
    Down = 2,
    Draining = 3,
}

/// <summary>
/// One key write inside a <see cref="WriteBatchCommand"/>. For a put, every field describes the new version the
/// leader staged on <see cref="Volumes"/> under <see cref="Transaction"/>; for a delete only the key, the
/// transaction and the condition matter (the other fields are zero/empty).
/// </summary>
/// <param name="Kind">Put or delete.</param>
/// <param name="Transaction">The two-phase transaction that staged the bytes; its outcome is recorded when applied.</param>
/// <param name="Key">The key's UTF-8 bytes.</param>
/// <param name="Version">The version the leader assigned; applied only when greater than the key's current version.</param>
/// <param name="Size">Bytes of the value.</param>
/// <param name="Checksum">CRC32 (IEEE) of the value.</param>
/// <param name="ContentType">The client's Content-Type, or empty.</param>
/// <param name="Volumes">The volume ids that hold the staged copy, in replica order.</param>
/// <param name="UnderReplicated">True when fewer than R volumes took the copy (at least W did).</param>
/// <param name="Condition">What to check against the key's state at the commit point.</param>
/// <param name="ConditionEtag">The ETag for <see cref="WriteCondition.IfMatch"/> (unquoted), else empty.</param>
public sealed record KeyWrite(
    WriteKind Kind,
    Guid Transaction,
    byte[] Key,
    ulong Version,
    long Size,
    uint Checksum,
    string ContentType,
    IReadOnlyList<string> Volumes,
    bool UnderReplicated,
    WriteCondition Condition,
    string ConditionEtag)
{
    public bool Equals(KeyWrite? other) =>
        other is not null && Kind == other.Kind && Transaction == other.Transaction && Key.AsSpan().SequenceEqual(other.Key)
        && Version == other.Version && Size == other.Size && Checksum == other.Checksum && ContentType == other.ContentType
        && Volumes.SequenceEqual(other.Volumes) && UnderReplicated == other.UnderReplicated && Condition == other.Condition
        && ConditionEtag == other.ConditionEtag;

    public override int GetHashCode() => HashCode.Combine(Kind, Transaction, Version, Size, Checksum);
}

/// <summary>A command carried by a Raft log entry and applied by <see cref="MetadataStateMachine"/>. Immutable.</summary>
public abstract record MetadataCommand;

/// <summary>
/// Many key writes committed by one Raft entry (concurrent client writes are batched into one proposal).
/// </summary>
/// <param name="Term">The leader's term when the writes began; an entry of another term rejects them, so a write
/// begun under an earlier leader can never commit later (the basis of <c>TransactionOutcome</c>'s "aborted").</param>
/// <param name="ModifiedUnixMs">The modification time the leader chose for every write of the batch.</param>
/// <param name="Writes">The writes, applied in order (a later write of the same key sees the earlier one).</param>
public sealed record WriteBatchCommand(long Term, long ModifiedUnixMs, IReadOnlyList<KeyWrite> Writes) : MetadataCommand
{
    public bool Equals(WriteBatchCommand? other) =>
        other is not null && Term == other.Term && ModifiedUnixMs == other.ModifiedUnixMs && Writes.SequenceEqual(other.Writes);

    public override int GetHashCode() => HashCode.Combine(Term, ModifiedUnixMs, Writes.Count);
}

/// <summary>Registers a volume or refreshes its addresses and capacity (a Join). Marks it up.</summary>
public sealed record RegisterVolumeCommand(string VolumeId, string HttpAddress, string GrpcAddress, long CapacityBytes, long AtUnixMs) : MetadataCommand;

/// <summary>A change of a volume's state decided by the leader (missed heartbeats, failed health, drain).</summary>
public sealed record SetVolumeStateCommand(string VolumeId, VolumeState State, long AtUnixMs) : MetadataCommand;

/// <summary>A shard's ordered replica list.</summary>
public sealed record ShardAssignment(int Shard, IReadOnlyList<string> Volumes)
{
    public bool Equals(ShardAssignment? other) => other is not null && Shard == other.Shard && Volumes.SequenceEqual(other.Volumes);

    public override int GetHashCode() => HashCode.Combine(Shard, Volumes.Count);
}

/// <summary>Sets the replica lists of some shards (all 256 when the map is first built, or those rebalance moves).</summary>
public sealed record SetShardsCommand(IReadOnlyList<ShardAssignment> Shards) : MetadataCommand
{
    public bool Equals(SetShardsCommand? other) => other is not null && Shards.SequenceEqual(other.Shards);

    public override int GetHashCode() => Shards.Count;
}

/// <summary>
/// Records that transactions will never commit, so a volume that holds their prepares and missed the Abort
/// learns it from <c>TransactionOutcome</c>. Proposed only when an Abort could not be delivered.
/// </summary>
public sealed record AbortTransactionsCommand(IReadOnlyList<Guid> Transactions) : MetadataCommand
{
    public bool Equals(AbortTransactionsCommand? other) => other is not null && Transactions.SequenceEqual(other.Transactions);

    public override int GetHashCode() => Transactions.Count;
}

/// <summary>
/// A coordinator's addresses, proposed by each new leader about itself, so followers can forward requests to the
/// leader's HTTP address and volumes can be told where it is.
/// </summary>
public sealed record CoordinatorAddressesCommand(string CoordinatorId, string HttpAddress, string GrpcAddress) : MetadataCommand;

/// <summary>
/// Starts a rebalance (or a drain): sets the moving shards' replica lists to their targets, so new writes land where
/// reads will look once each key moved, and records that a move is under way, so a new leader resumes it.
/// </summary>
/// <param name="JobId">The job that began it (shown by a resumed job).</param>
/// <param name="AtUnixMs">When it began.</param>
/// <param name="Targets">The shards whose lists change, with their new lists.</param>
public sealed record BeginRebalanceCommand(string JobId, long AtUnixMs, IReadOnlyList<ShardAssignment> Targets) : MetadataCommand
{
    public bool Equals(BeginRebalanceCommand? other) =>
        other is not null && JobId == other.JobId && AtUnixMs == other.AtUnixMs && Targets.SequenceEqual(other.Targets);

    public override int GetHashCode() => HashCode.Combine(JobId, AtUnixMs, Targets.Count);
}

/// <summary>Records that every key is on its shard's list: the rebalance begun as <paramref name="JobId"/> is over.</summary>
public sealed record EndRebalanceCommand(string JobId, long AtUnixMs) : MetadataCommand;

/// <summary>One key's new replica list, valid only while the key is still at <paramref name="Version"/>.</summary>
/// <param name="Key">The key's UTF-8 bytes.</param>
/// <param name="Version">The version that was copied; a key at any other version (or deleted) is left alone.</param>
/// <param name="Volumes">The volumes that now hold that version durably, in replica order.</param>
/// <param name="UnderReplicated">True when fewer than R volumes hold it.</param>
public sealed record KeyRelocation(byte[] Key, ulong Version, IReadOnlyList<string> Volumes, bool UnderReplicated)
{
    public bool Equals(KeyRelocation? other) =>
        other is not null && Key.AsSpan().SequenceEqual(other.Key) && Version == other.Version && Volumes.SequenceEqual(other.Volumes)
        && UnderReplicated == other.UnderReplicated;

    public override int GetHashCode() => HashCode.Combine(Version, Volumes.Count);
}

/// <summary>
/// Switches keys' replica lists after their copies were made durable on the new volumes (rebalance, drain). Each
/// relocation applies only if its key is still at the copied version, so a write that raced the copy wins.
/// </summary>
public sealed record RelocateKeysCommand(IReadOnlyList<KeyRelocation> Relocations) : MetadataCommand
{
    public bool Equals(RelocateKeysCommand? other) => other is not null && Relocations.SequenceEqual(other.Relocations);

    public override int GetHashCode() => Relocations.Count;
}

/// <summary>Drops a volume from the registry and from every shard list (after a drain left no key on it).</summary>
public sealed record RemoveVolumeCommand(string VolumeId, long AtUnixMs) : MetadataCommand;
