using MiniKV.Common;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Coordinator.Metadata;

/// <summary>
/// What the metadata knows about a key's current version: the source of truth for reads, repair and verify
/// (where each copy really is). Immutable.
/// </summary>
/// <param name="Key">The key's UTF-8 bytes.</param>
/// <param name="Version">The cluster version; grows with every write of the key.</param>
/// <param name="Size">Bytes of the value.</param>
/// <param name="Checksum">CRC32 (IEEE) of the value.</param>
/// <param name="ContentType">The stored Content-Type, or empty.</param>
/// <param name="ModifiedUnixMs">When the leader accepted the write.</param>
/// <param name="Volumes">The volumes that hold this version, in replica order.</param>
/// <param name="UnderReplicated">Fewer than R copies were written; repair brings it back to R.</param>
/// <param name="Transaction">The transaction that wrote this version.</param>
public sealed record KeyRecord(
    byte[] Key,
    ulong Version,
    long Size,
    uint Checksum,
    string ContentType,
    long ModifiedUnixMs,
    IReadOnlyList<string> Volumes,
    bool UnderReplicated,
    Guid Transaction)
{
    /// <summary>The strong, content-derived ETag (unquoted): the value's CRC32 as 8 hex digits, as the volumes' /blob sends it.</summary>
    public string ETag => Checksums.Format(Checksum);

    public DateTimeOffset Modified => DateTimeOffset.FromUnixTimeMilliseconds(ModifiedUnixMs);

    public bool Equals(KeyRecord? other) =>
        other is not null && Key.AsSpan().SequenceEqual(other.Key) && Version == other.Version && Size == other.Size
        && Checksum == other.Checksum && ContentType == other.ContentType && ModifiedUnixMs == other.ModifiedUnixMs
        && Volumes.SequenceEqual(other.Volumes) && UnderReplicated == other.UnderReplicated && Transaction == other.Transaction;

    public override int GetHashCode() => HashCode.Combine(Version, Size, Checksum);

    internal static KeyRecord From(KeyWrite write, long modifiedUnixMs) =>
        new(write.Key, write.Version, write.Size, write.Checksum, write.ContentType, modifiedUnixMs, write.Volumes, write.UnderReplicated, write.Transaction);
}

/// <summary>A registered volume as the Raft state holds it.</summary>
/// <param name="Id">The volume's --id.</param>
/// <param name="HttpAddress">http://host:port for clients (redirects).</param>
/// <param name="GrpcAddress">host:port for coordinators.</param>
/// <param name="State">Up, down or draining.</param>
/// <param name="CapacityBytes">Capacity reported at its last Join.</param>
/// <param name="RegisteredUnixMs">When it first joined.</param>
/// <param name="StateChangedUnixMs">When <paramref name="State"/> last changed.</param>
public sealed record VolumeRecord(string Id, string HttpAddress, string GrpcAddress, VolumeState State, long CapacityBytes, long RegisteredUnixMs, long StateChangedUnixMs);

/// <summary>What a transaction came to, as recorded at its commit point.</summary>
public enum TransactionOutcomeKind : byte
{
    /// <summary>No record: never proposed, or proposed under an earlier leader and lost.</summary>
    Unknown = 0,
    Committed = 1,
    Aborted = 2,
}
