using MiniKV.Common;

namespace MiniKV.Coordinator.Volumes;

/// <summary>What one PUT's data path is: which transaction, key, version and volumes, and the body's limits. Immutable.</summary>
public sealed record ReplicaPut
{
    /// <summary>The transaction id; the same one goes to <see cref="ReplicaWriter.CommitAsync"/> or <see cref="ReplicaWriter.AbortAsync"/>.</summary>
    public required Guid Tx { get; init; }

    /// <summary>The key's bytes (already checked by <see cref="KeyRules"/>).</summary>
    public required byte[] Key { get; init; }

    /// <summary>The version the value gets when committed (> 0); volumes store it with the value.</summary>
    public required ulong Version { get; init; }

    /// <summary>The volumes to stage the value on (R of them), in placement order.</summary>
    public required IReadOnlyList<VolumeAddress> Targets { get; init; }

    /// <summary>The body's Content-Length, or null for a chunked body.</summary>
    public long? ContentLength { get; init; }

    /// <summary>--max-value-size: a larger declared length is refused before any volume is contacted, and a chunked
    /// body is cut off as soon as it crosses it.</summary>
    public required long MaxValueSize { get; init; }

    /// <summary>W: streaming stops early (and the outcome is <see cref="PrepareStatus.NotEnoughReplicas"/>) once fewer
    /// targets than this are still healthy; there is no point reading the rest of a large body then.</summary>
    public int RequiredReplicas { get; init; } = 1;
}

/// <summary>How the data path of a PUT ended, as a whole.</summary>
public enum PrepareStatus
{
    /// <summary>At least <see cref="ReplicaPut.RequiredReplicas"/> volumes staged the value durably: propose it.</summary>
    Prepared,

    /// <summary>The body was read in full but too few volumes staged it (see <see cref="PrepareOutcome.Replicas"/>).</summary>
    NotEnoughReplicas,

    /// <summary>The body is larger than --max-value-size (413): declared so, or a chunked body crossed it.</summary>
    TooLarge,

    /// <summary>The client went away or its body broke off before its end: nothing may be committed.</summary>
    ClientGone,

    /// <summary>The body carried another number of bytes than its Content-Length said (400).</summary>
    SizeMismatch,
}

/// <summary>One target volume's part in a PUT: staged (Error null) or why not.</summary>
public readonly record struct ReplicaPrepareResult(VolumeAddress Volume, ReplicaError? Error)
{
    public bool Prepared => Error is null;
}

/// <summary>
/// The outcome of <see cref="ReplicaWriter.PrepareAsync(ReplicaPut, System.IO.Pipelines.PipeReader, CancellationToken)"/>.
/// Whatever the status, every target may hold a staged copy only if it is listed as prepared; the caller
/// either commits the transaction (status Prepared, after the Raft commit point) or aborts it on all
/// <see cref="ReplicaPut.Targets"/> (idempotent, cheap). Immutable.
/// </summary>
public sealed class PrepareOutcome
{
    internal PrepareOutcome(PrepareStatus status, string message, long size, uint crc32, IReadOnlyList<ReplicaPrepareResult> replicas)
    {
        Status = status;
        Message = message;
        Size = size;
        Crc32 = crc32;
        Replicas = replicas;
        var prepared = new List<VolumeAddress>(replicas.Count);
        foreach (var r in replicas)
        {
            if (r.Prepared)
            {
                prepared.Add(r.Volume);
            }
        }
        PreparedVolumes = prepared;
    }

    public PrepareStatus Status { get; }

    /// <summary>A sentence for the client or the log; empty when prepared on every target.</summary>
    public string Message { get; }

    /// <summary>Bytes of the value (those read so far when the body did not complete).</summary>
    public long Size { get; }

    /// <summary>CRC32 (IEEE) of the value's bytes: the checksum the volumes verified and stored.</summary>
    public uint Crc32 { get; }

    /// <summary>The checksum as the volume protocol writes it: 8 lowercase hex digits.</summary>
    public string Checksum => Checksums.Format(Crc32);

    /// <summary>The strong ETag, quoted for a header: see <see cref="Http.ETags"/>.</summary>
    public string ETag => Http.ETags.Format(Crc32);

    /// <summary>Every target, in the order given, with its result.</summary>
    public IReadOnlyList<ReplicaPrepareResult> Replicas { get; }

    /// <summary>The targets that staged the value, in the order given: the replicas to record and commit.</summary>
    public IReadOnlyList<VolumeAddress> PreparedVolumes { get; }

    /// <summary>True when some target failed because its disk is full (507 when too few replicas remain).</summary>
    public bool AnyFull
    {
        get
        {
            foreach (var r in Replicas)
            {
                if (r.Error?.Kind == ReplicaErrorKind.Full)
                {
                    return true;
                }
            }
            return false;
        }
    }
}

/// <summary>One volume's answer to a Commit, Abort or Delete: done (Error null) or why not.</summary>
public readonly record struct ReplicaCallResult(VolumeAddress Volume, ReplicaError? Error)
{
    public bool Ok => Error is null;
}
