using System.Buffers.Binary;
using System.Globalization;
using System.IO.Hashing;
using MiniKV.Storage.IO;

namespace MiniKV.Storage.Wal;

/// <summary>
/// A write-ahead log file in the WAL directory: a header naming a checkpoint, then records in
/// <see cref="Segments.RecordFormat"/>, byte for byte the same records that were appended to the active log segment.
/// <code>
/// offset size  field
///  0     4     magic            0x4C41_574D ("MWAL" in file order), little-endian u32
///  4     1     version          1
///  5     3     reserved         zero
///  8     4     segment id       u32: the log segment this WAL shadows
/// 12     8     checkpoint offset i64: every byte of that segment below it was fsynced before this file was created
/// 20     8     checkpoint seq   i64: every record with a sequence ≤ it lies below the checkpoint offset
/// 28     4     CRC32 of bytes [0, 28)
/// 32     ...   records
/// </code>
/// File name: <c>{n:D10}.wal</c>, n increasing; the newest file with a valid header is the live one and older
/// ones are obsolete. Version rule: a layout change bumps the version; readers refuse unknown versions.
/// </summary>
internal static class WalFile
{
    public const uint Magic = 0x4C41_574D;
    public const byte Version = 1;
    public const int HeaderSize = 32;

    public static string FileName(long number) => number.ToString("D10", CultureInfo.InvariantCulture) + ".wal";

    public static bool TryParseFileName(string name, out long number)
    {
        number = 0;
        return name.Length == 14 && name.EndsWith(".wal", StringComparison.Ordinal)
            && long.TryParse(name.AsSpan(0, 10), NumberStyles.None, CultureInfo.InvariantCulture, out number);
    }

    public static void WriteHeader(Span<byte> header, uint segmentId, long checkpointOffset, long checkpointSequence)
    {
        header[..HeaderSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        header[4] = Version;
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], segmentId);
        BinaryPrimitives.WriteInt64LittleEndian(header[12..], checkpointOffset);
        BinaryPrimitives.WriteInt64LittleEndian(header[20..], checkpointSequence);
        BinaryPrimitives.WriteUInt32LittleEndian(header[28..], Crc32.HashToUInt32(header[..28]));
    }

    public static bool TryReadHeader(IStorageFile file, out WalCheckpoint checkpoint)
    {
        checkpoint = default;
        Span<byte> header = stackalloc byte[HeaderSize];
        if (file.Read(0, header) < HeaderSize
            || BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic
            || header[4] != Version
            || BinaryPrimitives.ReadUInt32LittleEndian(header[28..]) != Crc32.HashToUInt32(header[..28]))
        {
            return false;
        }
        checkpoint = new WalCheckpoint(
            BinaryPrimitives.ReadUInt32LittleEndian(header[8..]),
            BinaryPrimitives.ReadInt64LittleEndian(header[12..]),
            BinaryPrimitives.ReadInt64LittleEndian(header[20..]));
        return true;
    }
}

/// <summary>The durable point a WAL file starts from.</summary>
internal readonly record struct WalCheckpoint(uint SegmentId, long Offset, long Sequence);
