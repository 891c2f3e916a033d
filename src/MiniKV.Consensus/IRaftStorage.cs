namespace MiniKV.Consensus;

/// <summary>What <see cref="IRaftStorage.Load"/> finds on disk at start.</summary>
/// <param name="HardState">The last persisted hard state (zero values on a new node).</param>
/// <param name="Snapshot">The last snapshot the log was compacted to, or null.</param>
/// <param name="Entries">Every entry after the snapshot, in index order, contiguous.</param>
public sealed record RaftInitialState(HardState HardState, SnapshotMetadata? Snapshot, IReadOnlyList<Entry> Entries);

/// <summary>
/// The durable Raft log and hard state. Called by one thread at a time (the driver's persist loop);
/// not thread-safe. Nothing is durable until <see cref="Sync"/> returns: a crash may lose any write
/// after the last <see cref="Sync"/>, but never corrupts what was synced (torn tails are truncated on
/// <see cref="Load"/>, every entry carries a CRC).
/// </summary>
public interface IRaftStorage : IDisposable
{
    /// <summary>Reads everything persisted; truncates a torn tail.</summary>
    RaftInitialState Load();

    /// <summary>Appends entries; an entry whose index is already present replaces it and everything after it.</summary>
    void Append(IReadOnlyList<Entry> entries);

    /// <summary>Records a new hard state.</summary>
    void SetHardState(HardState state);

    /// <summary>Makes every earlier Append / SetHardState / InstallSnapshot durable (one fsync for all of them).</summary>
    void Sync();

    /// <summary>Drops entries up to and including <paramref name="snapshot"/>.Index (whole files at a time) and
    /// records the snapshot metadata; durable after <see cref="Sync"/>.</summary>
    void Compact(SnapshotMetadata snapshot);

    /// <summary>Replaces the whole log with a snapshot received from the leader: every entry is dropped and the
    /// log continues at <paramref name="snapshot"/>.Index + 1; durable after <see cref="Sync"/>.</summary>
    void InstallSnapshot(SnapshotMetadata snapshot);
}
