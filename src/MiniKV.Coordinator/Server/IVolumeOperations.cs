using System.IO.Pipelines;
using MiniKV.Coordinator.Metadata;

namespace MiniKV.Coordinator.Server;

/// <summary>A value to stage on volumes under one transaction (the first phase of a write).</summary>
/// <param name="Tx">The transaction id.</param>
/// <param name="Key">The key.</param>
/// <param name="Version">The version the leader assigned.</param>
/// <param name="Targets">The volumes to stage on, best first.</param>
/// <param name="ContentLength">The request's Content-Length, when it had one.</param>
/// <param name="MaxValueSize">The --max-value-size limit.</param>
/// <param name="RequiredReplicas">W: fewer prepared copies fail the stage.</param>
public sealed record StageRequest(Guid Tx, byte[] Key, ulong Version, IReadOnlyList<VolumeRecord> Targets, long? ContentLength, long MaxValueSize, int RequiredReplicas);

/// <summary>How staging ended.</summary>
public enum StageStatus
{
    /// <summary>At least W volumes hold the value durably (and invisibly).</summary>
    Prepared,

    /// <summary>Fewer than W volumes took it (503).</summary>
    NotEnoughReplicas,

    /// <summary>Fewer than W volumes took it because volumes are full (507).</summary>
    VolumesFull,

    /// <summary>Over --max-value-size (413).</summary>
    TooLarge,

    /// <summary>The client went away or its body broke off.</summary>
    ClientGone,

    /// <summary>The body's length disagreed with its Content-Length (400).</summary>
    SizeMismatch,
}

/// <summary>What staging produced.</summary>
/// <param name="Status">How it ended.</param>
/// <param name="Message">Why, for the client and the log (also the failures of single volumes when prepared).</param>
/// <param name="Size">Bytes of the value.</param>
/// <param name="Checksum">CRC32 of the value.</param>
/// <param name="Prepared">The volumes that hold the staged value.</param>
public sealed record StageOutcome(StageStatus Status, string Message, long Size, uint Checksum, IReadOnlyList<VolumeRecord> Prepared);

/// <summary>How streaming a value to a client ended.</summary>
public enum ReadStatus
{
    /// <summary>Every requested byte was written.</summary>
    Completed,

    /// <summary>No replica could serve it and nothing was written (503).</summary>
    Unavailable,

    /// <summary>Bytes were written, then every replica failed: the response must be aborted.</summary>
    Broken,

    /// <summary>The client went away.</summary>
    ClientGone,
}

/// <summary>
/// What the coordinator's write and read paths need from the volumes: the two phases of a write, deletes, and
/// reads with failover. The product implementation is the volume client layer (Volumes/: ReplicaWriter,
/// ReplicaReader) behind an adapter; tests use an in-memory fake. Thread-safety: every member may be called
/// concurrently. Volume failures are results, never exceptions.
/// </summary>
public interface IVolumeOperations
{
    /// <summary>Streams the body to every target's Prepare in parallel; never buffers a large value whole.</summary>
    Task<StageOutcome> PrepareAsync(StageRequest request, PipeReader body, CancellationToken cancellationToken);

    /// <summary>Makes the transaction visible on the volumes; returns those that could not be told (they ask later).</summary>
    Task<IReadOnlyList<VolumeRecord>> CommitAsync(Guid tx, IReadOnlyList<VolumeRecord> volumes);

    /// <summary>Discards the transaction's staged value; returns the volumes that could not be told.</summary>
    Task<IReadOnlyList<VolumeRecord>> AbortAsync(Guid tx, IReadOnlyList<VolumeRecord> volumes);

    /// <summary>
    /// Removes the key's copies of version <paramref name="maxVersion"/> or older (after their removal committed); a
    /// volume keeps a newer copy, one a later write put there meanwhile. Best effort: failures are left to repair.
    /// </summary>
    Task DeleteAsync(byte[] key, ulong maxVersion, IReadOnlyList<VolumeRecord> volumes);

    /// <summary>
    /// Streams bytes [<paramref name="offset"/>, offset + <paramref name="length"/>) of the record's version from one
    /// of <paramref name="replicas"/> (in the given order, failing over) to <paramref name="destination"/>.
    /// </summary>
    Task<(ReadStatus Status, string Message)> ReadAsync(KeyRecord record, IReadOnlyList<VolumeRecord> replicas, long offset, long length, PipeWriter destination, CancellationToken cancellationToken);
}
