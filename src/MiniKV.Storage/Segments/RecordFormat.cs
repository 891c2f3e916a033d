using System.Buffers.Binary;
using System.IO.Hashing;

namespace MiniKV.Storage.Segments;

/// <summary>The kind byte of a record. Values are part of the on-disk format: never renumber.</summary>
public enum RecordKind : byte
{
    /// <summary>The key's value.</summary>
    Put = 1,
    /// <summary>The key was deleted; the value is empty.</summary>
    Tombstone = 2,
    /// <summary>A staged value of a two-phase write: value = <see cref="RecordFormat.PreparePrefixSize"/>-byte prefix (tx id, prepare time) + the value.</summary>
    Prepare = 3,
    /// <summary>A decision: value = tx id (16) + segment id (u32) + record offset (u64) of the prepared record, which becomes the key's value.</summary>
    Commit = 4,
    /// <summary>A decision: value as for Commit; the prepared record is discarded.</summary>
    Abort = 5,
}

/// <summary>
/// The record: the unit of every segment file, blob file and WAL file.
/// <code>
/// offset size  field
///  0     4     magic      0x5256_4B4D ("MKVR" in file order), little-endian u32
///  4     1     version    1; a reader rejects any other value (CorruptionKind.UnsupportedVersion)
///  5     1     kind       RecordKind
///  6     2     key length u16, 1..1024
///  8     8     value length i64, ≥ 0 (for Prepare it includes the 24-byte prefix)
/// 16     8     sequence   u64, strictly increasing per store; the highest sequence of a key wins
/// 24     4     header CRC CRC32 (IEEE) of bytes [0, 24) followed by the key
/// 28     4     record CRC CRC32 (IEEE) of the key, then the value, then bytes [0, 28)
/// 32     k     key
/// 32+k   v     value
/// </code>
/// The record CRC covers header, key and value; it is computed over the header last so that a value streamed
/// from a client can be checksummed as it is written and the header written after it. The separate header
/// CRC lets recovery trust the key and lengths of a record whose value is damaged, so the key is reported
/// corrupt instead of silently falling back to an older version. All integers little-endian.
/// Version rule: any change to this layout bumps <see cref="Version"/>; readers keep reading older versions.
/// </summary>
public static class RecordFormat
{
    public const uint Magic = 0x5256_4B4D;
    public const byte Version = 1;
    public const int HeaderSize = 32;
    public const int MaxKeyLength = 1024;
    /// <summary>Prepare records start their value with tx id (16 bytes) and prepare time (i64 Unix ms).</summary>
    public const int PreparePrefixSize = 24;
    /// <summary>Commit and Abort record value: tx id (16) + segment id (u32) + record offset (u64) of the prepared record.</summary>
    public const int DecisionValueSize = 28;

    public static long RecordSize(int keyLength, long valueLength) => HeaderSize + keyLength + valueLength;

    /// <summary>Fills bytes [0, 28) of <paramref name="header"/> (magic through header CRC).</summary>
    public static void WriteHeaderFields(Span<byte> header, RecordKind kind, ReadOnlySpan<byte> key, long valueLength, long sequence)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        header[4] = Version;
        header[5] = (byte)kind;
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], (ushort)key.Length);
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], valueLength);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], sequence);
        var crc = new Crc32();
        crc.Append(header[..24]);
        crc.Append(key);
        BinaryPrimitives.WriteUInt32LittleEndian(header[24..], crc.GetCurrentHashAsUInt32());
    }

    /// <summary>Finishes a record CRC that has already seen key and value, and stores it in the header.</summary>
    public static void CompleteRecordCrc(Span<byte> header, Crc32 keyAndValueCrc)
    {
        keyAndValueCrc.Append(header[..28]);
        BinaryPrimitives.WriteUInt32LittleEndian(header[28..], keyAndValueCrc.GetCurrentHashAsUInt32());
    }

    /// <summary>Encodes a whole record into <paramref name="destination"/>, which must hold <see cref="RecordSize"/> bytes.</summary>
    public static int Encode(Span<byte> destination, RecordKind kind, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, long sequence)
    {
        var header = destination[..HeaderSize];
        WriteHeaderFields(header, kind, key, value.Length, sequence);
        key.CopyTo(destination[HeaderSize..]);
        value.CopyTo(destination[(HeaderSize + key.Length)..]);
        var crc = new Crc32();
        crc.Append(key);
        crc.Append(value);
        CompleteRecordCrc(header, crc);
        return HeaderSize + key.Length + value.Length;
    }

    /// <summary>
    /// Parses and checks a header (magic, version, kind, lengths, header CRC; the key must follow in
    /// <paramref name="headerAndKey"/> when its length allows). Returns false with a reason when the bytes are not a valid header.
    /// </summary>
    public static bool TryParseHeader(ReadOnlySpan<byte> headerAndKey, out RecordHeader header, out CorruptionKind problem)
    {
        header = default;
        problem = CorruptionKind.TornTail;
        if (headerAndKey.Length < HeaderSize)
        {
            return false;
        }
        problem = CorruptionKind.BadHeader;
        if (BinaryPrimitives.ReadUInt32LittleEndian(headerAndKey) != Magic)
        {
            return false;
        }
        if (headerAndKey[4] != Version)
        {
            problem = CorruptionKind.UnsupportedVersion;
            return false;
        }
        var kind = (RecordKind)headerAndKey[5];
        var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(headerAndKey[6..]);
        var valueLength = BinaryPrimitives.ReadInt64LittleEndian(headerAndKey[8..]);
        if (kind is < RecordKind.Put or > RecordKind.Abort || keyLength is 0 or > MaxKeyLength || valueLength < 0)
        {
            return false;
        }
        if (headerAndKey.Length < HeaderSize + keyLength)
        {
            problem = CorruptionKind.TornTail;
            return false;
        }
        var crc = new Crc32();
        crc.Append(headerAndKey[..24]);
        crc.Append(headerAndKey.Slice(HeaderSize, keyLength));
        if (crc.GetCurrentHashAsUInt32() != BinaryPrimitives.ReadUInt32LittleEndian(headerAndKey[24..]))
        {
            problem = CorruptionKind.Checksum;
            return false;
        }
        header = new RecordHeader(kind, keyLength, valueLength,
            BinaryPrimitives.ReadInt64LittleEndian(headerAndKey[16..]),
            BinaryPrimitives.ReadUInt32LittleEndian(headerAndKey[28..]));
        return true;
    }

    /// <summary>Checks the record CRC of a record held entirely in <paramref name="record"/>.</summary>
    public static bool VerifyRecord(ReadOnlySpan<byte> record, in RecordHeader header)
    {
        var crc = new Crc32();
        crc.Append(record.Slice(HeaderSize, (int)(header.KeyLength + header.ValueLength)));
        crc.Append(record[..28]);
        return crc.GetCurrentHashAsUInt32() == header.RecordCrc;
    }
}

/// <summary>A parsed, header-CRC-checked record header.</summary>
public readonly record struct RecordHeader(RecordKind Kind, int KeyLength, long ValueLength, long Sequence, uint RecordCrc)
{
    public long RecordSize => RecordFormat.HeaderSize + KeyLength + ValueLength;
    public long ValueOffset => RecordFormat.HeaderSize + KeyLength;
}
