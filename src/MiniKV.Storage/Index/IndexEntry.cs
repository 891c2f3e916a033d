using MiniKV.Storage.Segments;

namespace MiniKV.Storage.Index;

/// <summary>
/// Where the current record of a key lives. 32 bytes; together with the dictionary slot, its 16-byte key reference and the key's bytes in the stripe's arena
/// this is the per-key memory cost measured in docs/storage.md.
/// </summary>
/// <param name="Sequence">The key's version: the sequence of its Put/Tombstone record, or of the Commit record for a committed prepare.</param>
/// <param name="Offset">Offset of the record (not the value) in its segment.</param>
/// <param name="ValueLength">Length of the user's value (without a prepare prefix).</param>
/// <param name="SegmentId">The segment holding the record.</param>
/// <param name="Kind">Put, Tombstone, or Prepare for a committed two-phase write.</param>
internal readonly record struct IndexEntry(long Sequence, long Offset, long ValueLength, uint SegmentId, RecordKind Kind)
{
    public bool IsTombstone => Kind == RecordKind.Tombstone;

    public bool SameLocation(in IndexEntry other) => SegmentId == other.SegmentId && Offset == other.Offset;

    /// <summary>Bytes the record occupies in its segment, for live-byte accounting.</summary>
    public long RecordSize(int keyLength) =>
        RecordFormat.RecordSize(keyLength, ValueLength + (Kind == RecordKind.Prepare ? RecordFormat.PreparePrefixSize : 0));

    public long ValueOffset(int keyLength) =>
        Offset + RecordFormat.HeaderSize + keyLength + (Kind == RecordKind.Prepare ? RecordFormat.PreparePrefixSize : 0);
}
