using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using System.Text.Unicode;
using MiniKV.Storage;
using MiniKV.Storage.Segments;

namespace MiniKV.Consensus.Storage;

/// <summary>What a Raft log record holds; the first byte of its key. Values are part of the on-disk format: never renumber.</summary>
internal enum RaftRecordType : byte
{
    /// <summary>A log entry, key layout v1.</summary>
    Entry = 1,

    /// <summary>A hard state, key layout v1.</summary>
    HardState = 2,
}

/// <summary>
/// The records of the Raft log segments. They are the storage engine's records (<see cref="RecordFormat"/>:
/// magic "MKVR", version 1, kind Put, header CRC over header and key, record CRC over key, value and header),
/// so the framing, torn-tail detection and scanner are the engine's; the Raft fields live in the record's key.
/// <code>
/// Entry record: sequence = entry index; value = entry data; key (26 bytes):
///   offset size  field
///    0     1     record type  1 (RaftRecordType.Entry)
///    1     1     entry kind   EntryKind (1 Normal, 2 Noop, 3 ConfChange)
///    2     8     term         i64
///   10    16     request id   Guid in its TryWriteBytes layout (RFC 4122 fields, first three little-endian)
///
/// Hard-state record: sequence = 0; value empty; key (17 + n bytes):
///    0     1     record type  2 (RaftRecordType.HardState)
///    1     8     term         i64
///    9     8     commit       i64
///   17     n     voted for    UTF-8 node id, n = 0 when none (n ≤ 1007 so the key fits the engine's 1024)
/// </code>
/// All integers little-endian. Version rule: the record framing versions itself (RecordFormat.Version); a change
/// to a key layout gets a new record type number, and readers keep reading the old numbers. A reader that meets a
/// type it does not know refuses the log (a newer build wrote it) instead of dropping the rest.
/// </summary>
internal static class RaftLogRecord
{
    public const int EntryKeySize = 26;
    public const int HardStateKeyPrefixSize = 17;
    public const int MaxVoteLength = RecordFormat.MaxKeyLength - HardStateKeyPrefixSize;

    public static int EntryRecordSize(Entry entry) => RecordFormat.HeaderSize + EntryKeySize + entry.Data.Length;

    public static int HardStateRecordSize(HardState state) =>
        RecordFormat.HeaderSize + HardStateKeyPrefixSize + (state.VotedFor is null ? 0 : Encoding.UTF8.GetByteCount(state.VotedFor));

    /// <summary>Encodes an entry record into <paramref name="destination"/>; <paramref name="crc"/> is scratch, reused to avoid an allocation per entry.</summary>
    public static int EncodeEntry(Span<byte> destination, Entry entry, Crc32 crc)
    {
        var key = destination.Slice(RecordFormat.HeaderSize, EntryKeySize);
        key[0] = (byte)RaftRecordType.Entry;
        key[1] = (byte)entry.Kind;
        BinaryPrimitives.WriteInt64LittleEndian(key[2..], entry.Term);
        entry.RequestId.TryWriteBytes(key[10..]);
        entry.Data.Span.CopyTo(destination[(RecordFormat.HeaderSize + EntryKeySize)..]);
        return Frame(destination, EntryKeySize, entry.Data.Length, entry.Index, crc);
    }

    public static int EncodeHardState(Span<byte> destination, HardState state, Crc32 crc)
    {
        var voteLength = 0;
        if (state.VotedFor is { } vote)
        {
            voteLength = Encoding.UTF8.GetByteCount(vote);
            if (voteLength > MaxVoteLength)
            {
                throw new ArgumentException($"node id '{vote}' is longer than {MaxVoteLength} UTF-8 bytes", nameof(state));
            }
        }
        var key = destination.Slice(RecordFormat.HeaderSize, HardStateKeyPrefixSize + voteLength);
        key[0] = (byte)RaftRecordType.HardState;
        BinaryPrimitives.WriteInt64LittleEndian(key[1..], state.Term);
        BinaryPrimitives.WriteInt64LittleEndian(key[9..], state.Commit);
        if (state.VotedFor is { } v)
        {
            Encoding.UTF8.GetBytes(v, key[HardStateKeyPrefixSize..]);
        }
        return Frame(destination, key.Length, 0, 0, crc);
    }

    /// <summary>
    /// Writes the engine's 32-byte header in front of key and value already in place. Byte for byte what
    /// <see cref="RecordFormat.Encode"/> produces (a test holds them equal), without its two Crc32 allocations.
    /// </summary>
    private static int Frame(Span<byte> destination, int keyLength, int valueLength, long sequence, Crc32 crc)
    {
        var header = destination[..RecordFormat.HeaderSize];
        var key = destination.Slice(RecordFormat.HeaderSize, keyLength);
        BinaryPrimitives.WriteUInt32LittleEndian(header, RecordFormat.Magic);
        header[4] = RecordFormat.Version;
        header[5] = (byte)RecordKind.Put;
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], (ushort)keyLength);
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], valueLength);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], sequence);
        crc.Reset();
        crc.Append(header[..24]);
        crc.Append(key);
        BinaryPrimitives.WriteUInt32LittleEndian(header[24..], crc.GetCurrentHashAsUInt32());
        crc.Reset();
        crc.Append(destination.Slice(RecordFormat.HeaderSize, keyLength + valueLength));
        crc.Append(header[..28]);
        BinaryPrimitives.WriteUInt32LittleEndian(header[28..], crc.GetCurrentHashAsUInt32());
        return RecordFormat.HeaderSize + keyLength + valueLength;
    }

    /// <summary>What a CRC-checked record holds. Returns false for a record type this build does not know.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, long sequence, out Entry? entry, out HardState? hardState)
    {
        entry = null;
        hardState = null;
        if (key.IsEmpty)
        {
            return false;
        }
        switch ((RaftRecordType)key[0])
        {
            case RaftRecordType.Entry when key.Length == EntryKeySize:
                var kind = (EntryKind)key[1];
                if (kind is < EntryKind.Normal or > EntryKind.ConfChange)
                {
                    return false;
                }
                entry = new Entry(
                    BinaryPrimitives.ReadInt64LittleEndian(key[2..]),
                    sequence,
                    kind,
                    new Guid(key.Slice(10, 16)),
                    value.ToArray());
                return true;
            case RaftRecordType.HardState when key.Length >= HardStateKeyPrefixSize && key.Length <= HardStateKeyPrefixSize + MaxVoteLength && value.IsEmpty:
                var vote = key[HardStateKeyPrefixSize..];
                string? votedFor = null;
                if (!vote.IsEmpty)
                {
                    // Only what EncodeHardState can write: strict UTF-8 (a lenient decode would turn bad bytes into
                    // replacement characters, a node id that re-encodes longer than the record allows).
                    if (!Utf8.IsValid(vote))
                    {
                        return false;
                    }
                    votedFor = Encoding.UTF8.GetString(vote);
                }
                hardState = new HardState(BinaryPrimitives.ReadInt64LittleEndian(key[1..]), votedFor, BinaryPrimitives.ReadInt64LittleEndian(key[9..]));
                return true;
            default:
                return false;
        }
    }

    /// <summary>The error for a record whose CRCs hold but whose content this build cannot read.</summary>
    public static CorruptionException Unreadable(string path, long offset) =>
        new(CorruptionKind.UnsupportedVersion, path, offset, "a Raft log record of a type or layout this build does not know (written by a newer version?)");
}
