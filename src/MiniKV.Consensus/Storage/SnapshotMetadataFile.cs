using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using MiniKV.Storage;

namespace MiniKV.Consensus.Storage;

/// <summary>The durable content of <see cref="SnapshotMetadataFile"/>: the snapshot, and the first log segment that still counts.</summary>
/// <param name="Snapshot">The snapshot the log was compacted to.</param>
/// <param name="FirstSegment">Segments numbered below this are obsolete (covered by the snapshot, or dropped by InstallSnapshot).</param>
internal sealed record SnapshotMetadataRecord(SnapshotMetadata Snapshot, long FirstSegment);

/// <summary>
/// The file <c>snapshot.meta</c>, replaced atomically (temp, fsync, rename, directory fsync) on every compaction
/// and snapshot install.
/// <code>
/// offset size  field
///  0     4     magic          0x4E53_4B4D ("MKSN" in file order), u32
///  4     1     version        1
///  5     3     reserved       zero
///  8     8     index          i64, last index the snapshot covers
/// 16     8     term           i64, term of that entry
/// 24     8     first segment  i64, segment files numbered below it are obsolete
/// 32     4     voter count    u32
/// 36     4     learner count  u32
/// 40     ...   voters then learners, each: u16 byte length + UTF-8 node id
/// end-4  4     CRC32 (IEEE) of every byte before it
/// </code>
/// All integers little-endian. Version rule: a layout change bumps the version; readers keep reading old versions
/// and refuse newer ones.
/// </summary>
internal static class SnapshotMetadataFile
{
    public const string FileName = "snapshot.meta";
    public const uint Magic = 0x4E53_4B4D;
    public const byte Version = 1;
    private const int FixedSize = 40;

    public static byte[] Encode(SnapshotMetadataRecord record)
    {
        var snapshot = record.Snapshot;
        var size = FixedSize + 4;
        foreach (var id in snapshot.Conf.Voters)
        {
            size += 2 + IdLength(id);
        }
        foreach (var id in snapshot.Conf.Learners)
        {
            size += 2 + IdLength(id);
        }
        var bytes = new byte[size];
        var span = bytes.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(span, Magic);
        span[4] = Version;
        BinaryPrimitives.WriteInt64LittleEndian(span[8..], snapshot.Index);
        BinaryPrimitives.WriteInt64LittleEndian(span[16..], snapshot.Term);
        BinaryPrimitives.WriteInt64LittleEndian(span[24..], record.FirstSegment);
        BinaryPrimitives.WriteUInt32LittleEndian(span[32..], (uint)snapshot.Conf.Voters.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(span[36..], (uint)snapshot.Conf.Learners.Count);
        var offset = FixedSize;
        foreach (var id in snapshot.Conf.Voters)
        {
            offset = WriteId(span, offset, id);
        }
        foreach (var id in snapshot.Conf.Learners)
        {
            offset = WriteId(span, offset, id);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(span[offset..], Crc32.HashToUInt32(span[..offset]));
        return bytes;
    }

    /// <summary>Parses the file's bytes; a damaged file is a <see cref="CorruptionException"/> because without it the log's start is unknown.</summary>
    public static SnapshotMetadataRecord Decode(ReadOnlySpan<byte> bytes, string path)
    {
        if (bytes.Length < FixedSize + 4 || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Magic)
        {
            throw new CorruptionException(CorruptionKind.BadHeader, path, 0, "not a snapshot metadata file");
        }
        if (bytes[4] != Version)
        {
            throw new CorruptionException(CorruptionKind.UnsupportedVersion, path, 4, $"snapshot metadata version {bytes[4]}; this build reads {Version}");
        }
        var body = bytes[..^4];
        if (Crc32.HashToUInt32(body) != BinaryPrimitives.ReadUInt32LittleEndian(bytes[^4..]))
        {
            throw new CorruptionException(CorruptionKind.Checksum, path, 0, "snapshot metadata CRC mismatch");
        }
        var voterCount = BinaryPrimitives.ReadUInt32LittleEndian(body[32..]);
        var learnerCount = BinaryPrimitives.ReadUInt32LittleEndian(body[36..]);
        var offset = FixedSize;
        var voters = ReadIds(body, ref offset, voterCount, path);
        var learners = ReadIds(body, ref offset, learnerCount, path);
        if (offset != body.Length)
        {
            throw new CorruptionException(CorruptionKind.BadHeader, path, offset, "trailing bytes after the member list");
        }
        var snapshot = new SnapshotMetadata(
            BinaryPrimitives.ReadInt64LittleEndian(body[8..]),
            BinaryPrimitives.ReadInt64LittleEndian(body[16..]),
            new ConfState(voters, learners));
        return new SnapshotMetadataRecord(snapshot, BinaryPrimitives.ReadInt64LittleEndian(body[24..]));
    }

    private static int IdLength(string id)
    {
        var length = Encoding.UTF8.GetByteCount(id);
        return length <= ushort.MaxValue ? length : throw new ArgumentException($"node id of {length} bytes is too long", nameof(id));
    }

    private static int WriteId(Span<byte> span, int offset, string id)
    {
        var length = Encoding.UTF8.GetBytes(id, span[(offset + 2)..]);
        BinaryPrimitives.WriteUInt16LittleEndian(span[offset..], (ushort)length);
        return offset + 2 + length;
    }

    private static string[] ReadIds(ReadOnlySpan<byte> body, ref int offset, uint count, string path)
    {
        if (count > (uint)(body.Length - offset) / 2)
        {
            throw new CorruptionException(CorruptionKind.BadHeader, path, offset, $"member count {count} does not fit the file");
        }
        var ids = new string[count];
        for (var i = 0; i < ids.Length; i++)
        {
            if (offset + 2 > body.Length)
            {
                throw new CorruptionException(CorruptionKind.BadHeader, path, offset, "member list runs past the end");
            }
            int length = BinaryPrimitives.ReadUInt16LittleEndian(body[offset..]);
            offset += 2;
            if (offset + length > body.Length)
            {
                throw new CorruptionException(CorruptionKind.BadHeader, path, offset, "member id runs past the end");
            }
            ids[i] = Encoding.UTF8.GetString(body.Slice(offset, length));
            offset += length;
        }
        return ids;
    }
}
