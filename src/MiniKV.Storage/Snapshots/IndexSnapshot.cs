using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using MiniKV.Storage.Index;
using MiniKV.Storage.IO;
using MiniKV.Storage.Segments;

namespace MiniKV.Storage.Snapshots;

/// <summary>
/// The index snapshot (hint file) <c>index.snap</c>: enough to rebuild the index without reading segments.
/// <code>
/// offset size  field
///  0     4     magic           0x5350_4B4D ("MKPS" in file order), little-endian u32
///  4     1     version         1
///  5     3     reserved        zero
///  8     8     sequence        i64: every record with a sequence ≤ it lies inside the covered lengths below
/// 16     8     next segment id i64: ids below it were handed out (never reuse an id a decision record may name)
/// 24     4     segment count   i32
/// 28     4     pending count   i32
/// 32     8     entry count     i64
/// 40     ...   segments: id u32, kind u8, covered length i64, min sequence i64, max sequence i64   (29 bytes each)
///        ...   entries:  key length u16, key, sequence i64, record offset i64, value length i64, segment id u32, kind u8
///        ...   pending:  tx id (16), key length u16, key, segment id u32, record offset i64, value length i64,
///                        sequence i64, prepared-at i64 (Unix ms)
/// end-4  4     CRC32 of every byte before it
/// </code>
/// A snapshot is written to <c>index.snap.tmp</c>, fsynced and renamed, so a reader sees a whole old one or a
/// whole new one. Anything wrong with it (CRC, version, a covered length beyond its file) makes recovery
/// fall back to a full scan. Version rule: a layout change bumps the version; older versions are rebuilt from segments.
/// </summary>
internal static class IndexSnapshot
{
    public const uint Magic = 0x5350_4B4D;
    public const byte Version = 1;
    public const int HeaderSize = 40;
    public const string FileName = "index.snap";

    public static void Write(IFileSystem fs, string directory, SnapshotData data)
    {
        var buffer = new ArrayBufferWriter<byte>(HeaderSize + (data.Entries.Count * 48) + 1024);
        var header = buffer.GetSpan(HeaderSize)[..HeaderSize];
        header.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        header[4] = Version;
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], data.Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], data.NextSegmentId);
        BinaryPrimitives.WriteInt32LittleEndian(header[24..], data.Segments.Count);
        BinaryPrimitives.WriteInt32LittleEndian(header[28..], data.Pending.Count);
        BinaryPrimitives.WriteInt64LittleEndian(header[32..], data.Entries.Count);
        buffer.Advance(HeaderSize);
        foreach (var s in data.Segments)
        {
            var span = buffer.GetSpan(29);
            BinaryPrimitives.WriteUInt32LittleEndian(span, s.Id);
            span[4] = (byte)s.Kind;
            BinaryPrimitives.WriteInt64LittleEndian(span[5..], s.CoveredLength);
            BinaryPrimitives.WriteInt64LittleEndian(span[13..], s.MinSequence);
            BinaryPrimitives.WriteInt64LittleEndian(span[21..], s.MaxSequence);
            buffer.Advance(29);
        }
        foreach (var (key, e) in data.Entries)
        {
            var span = buffer.GetSpan(2 + key.Length + 29);
            BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)key.Length);
            key.CopyTo(span[2..]);
            var rest = span[(2 + key.Length)..];
            BinaryPrimitives.WriteInt64LittleEndian(rest, e.Sequence);
            BinaryPrimitives.WriteInt64LittleEndian(rest[8..], e.Offset);
            BinaryPrimitives.WriteInt64LittleEndian(rest[16..], e.ValueLength);
            BinaryPrimitives.WriteUInt32LittleEndian(rest[24..], e.SegmentId);
            rest[28] = (byte)e.Kind;
            buffer.Advance(2 + key.Length + 29);
        }
        foreach (var p in data.Pending)
        {
            var span = buffer.GetSpan(16 + 2 + p.Key.Length + 36);
            p.Id.Write(span);
            BinaryPrimitives.WriteUInt16LittleEndian(span[16..], (ushort)p.Key.Length);
            p.Key.CopyTo(span[18..]);
            var rest = span[(18 + p.Key.Length)..];
            BinaryPrimitives.WriteUInt32LittleEndian(rest, p.SegmentId);
            BinaryPrimitives.WriteInt64LittleEndian(rest[4..], p.Offset);
            BinaryPrimitives.WriteInt64LittleEndian(rest[12..], p.ValueLength);
            BinaryPrimitives.WriteInt64LittleEndian(rest[20..], p.Sequence);
            BinaryPrimitives.WriteInt64LittleEndian(rest[28..], p.PreparedAtMs);
            buffer.Advance(16 + 2 + p.Key.Length + 36);
        }
        var crc = Crc32.HashToUInt32(buffer.WrittenSpan);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer.GetSpan(4), crc);
        buffer.Advance(4);
        AtomicFile.Write(fs, directory, FileName, buffer.WrittenMemory);
    }

    /// <summary>Reads and checks a snapshot; null with a reason when it is missing or unusable.</summary>
    public static SnapshotData? TryRead(IFileSystem fs, string directory, out string? rejectedBecause)
    {
        var path = Path.Combine(directory, FileName);
        rejectedBecause = null;
        if (!fs.FileExists(path))
        {
            rejectedBecause = "no snapshot";
            return null;
        }
        byte[] bytes;
        using (var file = fs.Open(path, OpenMode.ReadOnly))
        {
            var length = file.Length;
            if (length < HeaderSize + 4 || length > Array.MaxLength)
            {
                rejectedBecause = $"snapshot has impossible length {length}";
                return null;
            }
            bytes = GC.AllocateUninitializedArray<byte>((int)length);
            if (file.Read(0, bytes) != length)
            {
                rejectedBecause = "snapshot shorter than its length";
                return null;
            }
        }
        var body = bytes.AsSpan(0, bytes.Length - 4);
        if (Crc32.HashToUInt32(body) != BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4)))
        {
            rejectedBecause = "snapshot CRC mismatch";
            return null;
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(body) != Magic || body[4] != Version)
        {
            rejectedBecause = "snapshot magic or version not recognised";
            return null;
        }
        try
        {
            return Parse(body);
        }
        catch (ArgumentOutOfRangeException)
        {
            rejectedBecause = "snapshot counts do not match its contents";
            return null;
        }
    }

    private static SnapshotData Parse(ReadOnlySpan<byte> body)
    {
        var sequence = BinaryPrimitives.ReadInt64LittleEndian(body[8..]);
        var nextSegmentId = BinaryPrimitives.ReadInt64LittleEndian(body[16..]);
        var segmentCount = BinaryPrimitives.ReadInt32LittleEndian(body[24..]);
        var pendingCount = BinaryPrimitives.ReadInt32LittleEndian(body[28..]);
        var entryCount = BinaryPrimitives.ReadInt64LittleEndian(body[32..]);
        if (segmentCount < 0 || pendingCount < 0 || entryCount < 0 || entryCount > body.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(body));
        }
        var position = HeaderSize;
        var segments = new List<SnapshotSegment>(segmentCount);
        for (var i = 0; i < segmentCount; i++)
        {
            var span = body.Slice(position, 29);
            segments.Add(new SnapshotSegment(BinaryPrimitives.ReadUInt32LittleEndian(span), (SegmentKind)span[4],
                BinaryPrimitives.ReadInt64LittleEndian(span[5..]), BinaryPrimitives.ReadInt64LittleEndian(span[13..]),
                BinaryPrimitives.ReadInt64LittleEndian(span[21..])));
            position += 29;
        }
        var entries = new List<KeyValuePair<byte[], IndexEntry>>((int)entryCount);
        for (long i = 0; i < entryCount; i++)
        {
            var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(body[position..]);
            var key = body.Slice(position + 2, keyLength).ToArray();
            var rest = body.Slice(position + 2 + keyLength, 29);
            entries.Add(new(key, new IndexEntry(BinaryPrimitives.ReadInt64LittleEndian(rest), BinaryPrimitives.ReadInt64LittleEndian(rest[8..]),
                BinaryPrimitives.ReadInt64LittleEndian(rest[16..]), BinaryPrimitives.ReadUInt32LittleEndian(rest[24..]), (RecordKind)rest[28])));
            position += 2 + keyLength + 29;
        }
        var pending = new List<SnapshotPending>(pendingCount);
        for (var i = 0; i < pendingCount; i++)
        {
            var id = TxId.Read(body[position..]);
            var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(body[(position + 16)..]);
            var key = body.Slice(position + 18, keyLength).ToArray();
            var rest = body.Slice(position + 18 + keyLength, 36);
            pending.Add(new SnapshotPending(id, key, BinaryPrimitives.ReadUInt32LittleEndian(rest), BinaryPrimitives.ReadInt64LittleEndian(rest[4..]),
                BinaryPrimitives.ReadInt64LittleEndian(rest[12..]), BinaryPrimitives.ReadInt64LittleEndian(rest[20..]), BinaryPrimitives.ReadInt64LittleEndian(rest[28..])));
            position += 18 + keyLength + 36;
        }
        if (position != body.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(body));
        }
        return new SnapshotData(sequence, nextSegmentId, segments, entries, pending);
    }
}

internal sealed record SnapshotData(long Sequence, long NextSegmentId, List<SnapshotSegment> Segments,
    List<KeyValuePair<byte[], IndexEntry>> Entries, List<SnapshotPending> Pending);

internal sealed record SnapshotSegment(uint Id, SegmentKind Kind, long CoveredLength, long MinSequence, long MaxSequence);

internal sealed record SnapshotPending(TxId Id, byte[] Key, uint SegmentId, long Offset, long ValueLength, long Sequence, long PreparedAtMs);
