using System.Buffers.Binary;
using System.IO.Hashing;

namespace MiniKV.RaftBench;

/// <summary>
/// The on-disk format of <see cref="AppliedLogStateMachine"/>: the request id of every applied entry, in log order.
/// Layout (little-endian), version 1:
///   header, 16 bytes: magic "MKVRBSM1" (8 ASCII bytes) | version u32 = 1 | CRC-32 (IEEE) of bytes 0..11, u32
///   record, 32 bytes each: log index i64 | entry kind u8 | 3 zero bytes | request id (16 bytes, Guid.TryWriteBytes
///   order) | CRC-32 (IEEE) of bytes 0..27 of the record, u32
/// Records are appended in index order (written to the kernel by Apply, fsynced before a snapshot), so a crash can only
/// lose or tear records after the last snapshot: the reader stops at the first short or corrupt record and the file is
/// cut there (those entries are re-applied from the Raft log, which is not compacted past a snapshot). A reader refuses any other version; a change of layout bumps the version and the magic's last digit.
/// </summary>
internal static class AppliedLog
{
    public const int HeaderSize = 16;
    public const int RecordSize = 32;
    public const uint Version = 1;
    private static readonly byte[] Magic = "MKVRBSM1"u8.ToArray();

    public static byte[] Header()
    {
        var header = new byte[HeaderSize];
        Magic.CopyTo(header, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), Version);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), Crc32.HashToUInt32(header.AsSpan(0, 12)));
        return header;
    }

    public static void WriteRecord(Span<byte> destination, long index, EntryKindByte kind, Guid requestId)
    {
        destination[..RecordSize].Clear();
        BinaryPrimitives.WriteInt64LittleEndian(destination, index);
        destination[8] = (byte)kind;
        requestId.TryWriteBytes(destination.Slice(12, 16));
        BinaryPrimitives.WriteUInt32LittleEndian(destination[28..], Crc32.HashToUInt32(destination[..28]));
    }

    /// <summary>Parses a whole file image; returns the records and the length of the valid prefix, or null when the header is not ours.</summary>
    public static (List<AppliedRecord> Records, long ValidLength)? Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length < HeaderSize || !data[..8].SequenceEqual(Magic)
            || BinaryPrimitives.ReadUInt32LittleEndian(data[12..]) != Crc32.HashToUInt32(data[..12])
            || BinaryPrimitives.ReadUInt32LittleEndian(data[8..]) != Version)
        {
            return null;
        }
        var records = new List<AppliedRecord>();
        var offset = HeaderSize;
        while (offset + RecordSize <= data.Length)
        {
            var r = data.Slice(offset, RecordSize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(r[28..]) != Crc32.HashToUInt32(r[..28]))
            {
                break;
            }
            records.Add(new AppliedRecord(BinaryPrimitives.ReadInt64LittleEndian(r), (EntryKindByte)r[8], new Guid(r.Slice(12, 16))));
            offset += RecordSize;
        }
        return (records, offset);
    }
}

/// <summary>What kind of entry a record stands for (the Raft <c>EntryKind</c> values).</summary>
internal enum EntryKindByte : byte
{
    Normal = 1,
    Noop = 2,
    ConfChange = 3,
}

internal readonly record struct AppliedRecord(long Index, EntryKindByte Kind, Guid RequestId);
