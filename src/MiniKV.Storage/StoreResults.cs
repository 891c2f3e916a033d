using System.Buffers.Binary;
using System.Globalization;

namespace MiniKV.Storage;

/// <summary>Expected outcomes of store operations, returned as values rather than thrown.</summary>
public enum StoreStatus
{
    Ok,
    NotFound,
    /// <summary>The record failed its CRC check; it is never returned as data and is counted in <see cref="StoreStats.CorruptRecords"/>.</summary>
    Corrupt,
    /// <summary>The value is larger than <see cref="StoreOptions.MaxValueSize"/>; nothing was stored.</summary>
    ValueTooLarge,
    /// <summary>The stream ended before (or ran past) the length the caller declared; nothing was stored.</summary>
    SizeMismatch,
    /// <summary>No prepared transaction has this id (and none was decided recently).</summary>
    UnknownTransaction,
    /// <summary>The transaction id is already prepared or decided.</summary>
    TransactionExists,
    /// <summary>Commit of an aborted transaction, or abort of a committed one.</summary>
    TransactionConflict,
    /// <summary>The range asked for lies outside the value.</summary>
    RangeNotSatisfiable,
    /// <summary>A conditional delete found the key at another record than the one named (or gone); nothing was written.</summary>
    Changed,
}

/// <summary>A transaction id of a two-phase write: 16 bytes chosen by the coordinator.</summary>
public readonly record struct TxId(ulong High, ulong Low)
{
    public const int Size = 16;

    public static TxId NewRandom() => Read(Guid.NewGuid().ToByteArray());

    public static TxId Read(ReadOnlySpan<byte> source) =>
        new(BinaryPrimitives.ReadUInt64LittleEndian(source), BinaryPrimitives.ReadUInt64LittleEndian(source[8..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, High);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Low);
    }

    public override string ToString() => High.ToString("x16", CultureInfo.InvariantCulture) + Low.ToString("x16", CultureInfo.InvariantCulture);

    public static bool TryParse(string? text, out TxId id)
    {
        id = default;
        if (text is not { Length: 32 }
            || !ulong.TryParse(text.AsSpan(0, 16), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var high)
            || !ulong.TryParse(text.AsSpan(16), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var low))
        {
            return false;
        }
        id = new TxId(high, low);
        return true;
    }
}

/// <summary>Outcome of a put, delete, commit or abort. <see cref="Sequence"/> is the key's new version when it applied.</summary>
public readonly record struct WriteResult(StoreStatus Status, long Sequence = 0)
{
    public bool IsOk => Status == StoreStatus.Ok;
}

/// <summary>What the index knows about a key, without touching the disk.</summary>
public readonly record struct ValueInfo(long Sequence, long Length);

/// <summary>Outcome of <see cref="BlobStore.Read"/>: the whole value in memory.</summary>
public readonly record struct ReadResult(StoreStatus Status, ReadOnlyMemory<byte> Value = default, long Sequence = 0);

/// <summary>Outcome of <see cref="BlobStore.OpenReadAsync"/>. Dispose <see cref="Stream"/> when done.</summary>
public readonly record struct ReadStreamResult(StoreStatus Status, Stream? Stream = null, ValueInfo Info = default);

/// <summary>A transaction that is prepared and not yet decided.</summary>
public sealed record PreparedTransaction(TxId Id, byte[] Key, long Length, DateTimeOffset PreparedAt);

/// <summary>A key held by the store, as listed by <see cref="BlobStore.EnumerateKeys"/>.</summary>
public readonly record struct KeyInfo(byte[] Key, long Sequence, long Length);

/// <summary>Counters for metrics and heartbeats. A snapshot; values keep changing.</summary>
public sealed record StoreStats
{
    public long Keys { get; init; }
    public long LiveBytes { get; init; }
    public long DiskBytes { get; init; }
    public int Segments { get; init; }
    public long CorruptRecords { get; init; }
    public long CacheBytes { get; init; }
    public long CacheHits { get; init; }
    public long CacheMisses { get; init; }
    public int PreparedTransactions { get; init; }
    public long Fsyncs { get; init; }
    public long CompactionRuns { get; init; }
    public long CompactedSegments { get; init; }
    public long CompactionReclaimedBytes { get; init; }
    public long SnapshotsWritten { get; init; }
    public long Sequence { get; init; }
    public RecoveryInfo? LastRecovery { get; init; }
}

/// <summary>
/// How the last open rebuilt the index: from a snapshot plus a tail, or by a full scan; and what it repaired.
/// <see cref="CpuTime"/> is the whole process's CPU time during the recovery (all cores, anything else the process did included).
/// </summary>
public sealed record RecoveryInfo(bool FromSnapshot, string? SnapshotRejectedBecause, long RecordsScanned, long WalRecordsReplayed,
    long TornBytesTruncated, long SkippedDamagedBytes, int IncompleteBlobsRemoved, bool BloomRebuilt, TimeSpan Elapsed, TimeSpan CpuTime);

/// <summary>What a compaction run did.</summary>
public sealed record CompactionResult(int SegmentsCompacted, long BytesBefore, long BytesAfter, long RecordsCopied, long TombstonesDropped);
