using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using MiniKV.Storage.Index;
using MiniKV.Storage.IO;
using MiniKV.Storage.Segments;

namespace MiniKV.Storage.Snapshots;

/// <summary>
/// The index snapshot (hint file) <c>index.snap</c>: enough to rebuild the index without reading segments.
/// Version 2 (written), all integers little-endian:
/// <code>
/// offset size  field
///  0     4     magic           0x5350_4B4D ("MKPS" in file order), u32
///  4     1     version         2
///  5     3     reserved        zero
///  8     8     sequence        i64: every record with a sequence ≤ it lies inside the covered lengths below
/// 16     8     next segment id i64: ids below it were handed out (never reuse an id a decision record may name)
/// 24     4     segment count   i32
/// 28     4     pending count   i32
/// 32     8     entry count     i64 (all sections together)
/// 40     4     section count   i32, 1..4096
/// 44     4     head length     i32: bytes from offset 0 up to and including the head CRC
/// 48     ...   segments: id u32, kind u8, covered length i64, min sequence i64, max sequence i64   (29 bytes each)
///        ...   pending:  tx id (16), key length u16, key, segment id u32, record offset i64, value length i64,
///                        sequence i64, prepared-at i64 (Unix ms)
///        ...   section table, one per section: entry count i32, byte length i64, CRC32 of the section u32 (16 bytes each)
///        4     head CRC: CRC32 of every byte from offset 0 up to here
/// head length  sections back to back, in table order; each holds its entries as
///              key length u16, key, sequence i64, record offset i64, value length i64, segment id u32, kind u8
/// </code>
/// A key's section is <c>(XxHash3(key) &gt;&gt; 32) * sectionCount &gt;&gt; 32</c>, which with 64 sections is the index
/// stripe (<see cref="KeyIndex.StripeIndexOf"/>): a restart parses and inserts the sections on all cores at once, each into
/// its own stripe, and checks each section's CRC in the thread that parses it. A reader must not rely on the
/// placement for correctness (a key in another section is inserted the slow way); it relies on the CRCs.
///
/// Version 1 (read only) is the same head without the section count and head length (the segments start at
/// offset 40), then the pending list after the entries, one section, and one CRC32 of every byte before it at the end.
///
/// A snapshot is written to <c>index.snap.tmp</c>, fsynced and renamed, so a reader sees a whole old one or a
/// whole new one. Anything wrong with it (a CRC, the version, a covered length beyond its file) makes recovery
/// fall back to a full scan. Version rule: a layout change bumps the version; readers keep reading the versions
/// listed here and treat any other as missing (rebuilt from segments).
/// </summary>
internal static class IndexSnapshot
{
    public const uint Magic = 0x5350_4B4D;
    public const byte Version = 2;
    public const byte Version1 = 1;
    public const int HeaderSize = 48;
    public const int Version1HeaderSize = 40;
    public const int SectionTableEntrySize = 16;
    public const int MaxSections = 4096;
    public const int EntryFixedSize = 29;
    public const string FileName = "index.snap";

    /// <summary>The section of a key with hash <paramref name="hash"/> (<see cref="KeyComparer.Hash"/>) among <paramref name="sections"/>.</summary>
    public static int SectionOf(ulong hash, int sections) => (int)(((hash >> 32) * (ulong)sections) >> 32);

    public static void Write(IFileSystem fs, string directory, SnapshotData data, int sectionCount = KeyIndex.StripeCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(sectionCount, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(sectionCount, MaxSections);
        var entries = data.Entries;
        var sectionOf = new int[entries.Count];
        var counts = new int[sectionCount];
        var lengths = new long[sectionCount];
        for (var i = 0; i < entries.Count; i++)
        {
            var key = entries[i].Key;
            var section = SectionOf(KeyComparer.Hash(key), sectionCount);
            sectionOf[i] = section;
            counts[section]++;
            lengths[section] += 2 + key.Length + EntryFixedSize;
        }
        var headLength = HeaderSize + (data.Segments.Count * 29) + (sectionCount * SectionTableEntrySize) + 4;
        foreach (var p in data.Pending)
        {
            headLength += 16 + 2 + p.Key.Length + 36;
        }
        long total = headLength;
        var starts = new long[sectionCount];
        for (var s = 0; s < sectionCount; s++)
        {
            starts[s] = total;
            total += lengths[s];
        }
        if (total > Array.MaxLength)
        {
            throw new StorageException(StorageErrorKind.Io, $"the index snapshot would be {total} bytes, more than one buffer holds");
        }
        var bytes = GC.AllocateUninitializedArray<byte>((int)total);
        var header = bytes.AsSpan(0, HeaderSize);
        header.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        header[4] = Version;
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], data.Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], data.NextSegmentId);
        BinaryPrimitives.WriteInt32LittleEndian(header[24..], data.Segments.Count);
        BinaryPrimitives.WriteInt32LittleEndian(header[28..], data.Pending.Count);
        BinaryPrimitives.WriteInt64LittleEndian(header[32..], entries.Count);
        BinaryPrimitives.WriteInt32LittleEndian(header[40..], sectionCount);
        BinaryPrimitives.WriteInt32LittleEndian(header[44..], headLength);
        var position = HeaderSize;
        foreach (var s in data.Segments)
        {
            WriteSegment(bytes.AsSpan(position, 29), s);
            position += 29;
        }
        foreach (var p in data.Pending)
        {
            position += WritePending(bytes.AsSpan(position), p);
        }
        var cursors = (long[])starts.Clone();
        for (var i = 0; i < entries.Count; i++)
        {
            var (key, e) = entries[i];
            var at = (int)cursors[sectionOf[i]];
            cursors[sectionOf[i]] += WriteEntry(bytes.AsSpan(at), key, e);
        }
        for (var s = 0; s < sectionCount; s++)
        {
            var row = bytes.AsSpan(position, SectionTableEntrySize);
            BinaryPrimitives.WriteInt32LittleEndian(row, counts[s]);
            BinaryPrimitives.WriteInt64LittleEndian(row[4..], lengths[s]);
            BinaryPrimitives.WriteUInt32LittleEndian(row[12..], Crc32.HashToUInt32(bytes.AsSpan((int)starts[s], (int)lengths[s])));
            position += SectionTableEntrySize;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(position), Crc32.HashToUInt32(bytes.AsSpan(0, position)));
        AtomicFile.Write(fs, directory, FileName, bytes);
    }

    private static void WriteSegment(Span<byte> span, SnapshotSegment s)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(span, s.Id);
        span[4] = (byte)s.Kind;
        BinaryPrimitives.WriteInt64LittleEndian(span[5..], s.CoveredLength);
        BinaryPrimitives.WriteInt64LittleEndian(span[13..], s.MinSequence);
        BinaryPrimitives.WriteInt64LittleEndian(span[21..], s.MaxSequence);
    }

    private static int WritePending(Span<byte> span, SnapshotPending p)
    {
        p.Id.Write(span);
        BinaryPrimitives.WriteUInt16LittleEndian(span[16..], (ushort)p.Key.Length);
        p.Key.CopyTo(span[18..]);
        var rest = span[(18 + p.Key.Length)..];
        BinaryPrimitives.WriteUInt32LittleEndian(rest, p.SegmentId);
        BinaryPrimitives.WriteInt64LittleEndian(rest[4..], p.Offset);
        BinaryPrimitives.WriteInt64LittleEndian(rest[12..], p.ValueLength);
        BinaryPrimitives.WriteInt64LittleEndian(rest[20..], p.Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(rest[28..], p.PreparedAtMs);
        return 16 + 2 + p.Key.Length + 36;
    }

    private static int WriteEntry(Span<byte> span, byte[] key, in IndexEntry e)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)key.Length);
        key.CopyTo(span[2..]);
        var rest = span[(2 + key.Length)..];
        BinaryPrimitives.WriteInt64LittleEndian(rest, e.Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(rest[8..], e.Offset);
        BinaryPrimitives.WriteInt64LittleEndian(rest[16..], e.ValueLength);
        BinaryPrimitives.WriteUInt32LittleEndian(rest[24..], e.SegmentId);
        rest[28] = (byte)e.Kind;
        return 2 + key.Length + EntryFixedSize;
    }

    /// <summary>
    /// Reads and checks the head of a snapshot (everything but the entries of a version 2 file); null with a reason
    /// when it is missing or unusable. A version 1 file is read whole, its entries included.
    /// </summary>
    public static SnapshotHead? TryReadHead(IFileSystem fs, string directory, out string? rejectedBecause)
    {
        var path = Path.Combine(directory, FileName);
        rejectedBecause = null;
        if (!fs.FileExists(path))
        {
            rejectedBecause = "no snapshot";
            return null;
        }
        using var file = fs.Open(path, OpenMode.ReadOnly);
        var length = file.Length;
        Span<byte> fixedHead = stackalloc byte[HeaderSize];
        if (length < Version1HeaderSize + 4 || file.Read(0, fixedHead) < Version1HeaderSize)
        {
            rejectedBecause = $"snapshot has impossible length {length}";
            return null;
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(fixedHead) != Magic || fixedHead[4] is not (Version or Version1))
        {
            rejectedBecause = "snapshot magic or version not recognised";
            return null;
        }
        try
        {
            return fixedHead[4] == Version1 ? ReadVersion1(file, out rejectedBecause) : ReadHead(file, fixedHead, out rejectedBecause);
        }
        catch (ArgumentOutOfRangeException)
        {
            rejectedBecause = "snapshot counts do not match its contents";
            return null;
        }
    }

    private static SnapshotHead? ReadHead(IStorageFile file, ReadOnlySpan<byte> fixedHead, out string? rejectedBecause)
    {
        var headLength = file.Length < HeaderSize + 4 ? 0 : BinaryPrimitives.ReadInt32LittleEndian(fixedHead[44..]);
        if (headLength < HeaderSize + 4 || headLength > file.Length)
        {
            rejectedBecause = $"snapshot head length {headLength} impossible for a file of {file.Length} bytes";
            return null;
        }
        var head = GC.AllocateUninitializedArray<byte>(headLength);
        if (file.Read(0, head) != headLength)
        {
            rejectedBecause = "snapshot shorter than its head";
            return null;
        }
        var body = head.AsSpan(0, headLength - 4);
        if (Crc32.HashToUInt32(body) != BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(headLength - 4)))
        {
            rejectedBecause = "snapshot head CRC mismatch";
            return null;
        }
        var (sequence, nextSegmentId, segmentCount, pendingCount, entryCount) = ReadCounts(body);
        var sectionCount = BinaryPrimitives.ReadInt32LittleEndian(body[40..]);
        if (sectionCount is < 1 or > MaxSections)
        {
            throw new ArgumentOutOfRangeException(nameof(fixedHead));
        }
        var position = HeaderSize;
        var segments = ReadSegments(body, segmentCount, ref position);
        var pending = ReadPending(body, pendingCount, ref position);
        var sections = new SnapshotSection[sectionCount];
        long offset = headLength, entries = 0;
        for (var s = 0; s < sectionCount; s++)
        {
            var row = body.Slice(position, SectionTableEntrySize);
            var count = BinaryPrimitives.ReadInt32LittleEndian(row);
            var bytes = BinaryPrimitives.ReadInt64LittleEndian(row[4..]);
            if (count < 0 || bytes < (long)count * (2 + EntryFixedSize) || bytes > int.MaxValue)
            {
                throw new ArgumentOutOfRangeException(nameof(fixedHead));
            }
            sections[s] = new SnapshotSection(offset, (int)bytes, count, BinaryPrimitives.ReadUInt32LittleEndian(row[12..]));
            offset += bytes;
            entries += count;
            position += SectionTableEntrySize;
        }
        if (position != body.Length || entries != entryCount || offset != file.Length)
        {
            rejectedBecause = "snapshot counts do not match its contents";
            return null;
        }
        rejectedBecause = null;
        return new SnapshotHead(Version, sequence, nextSegmentId, segments, pending, entryCount, sections, null);
    }

    private static SnapshotHead? ReadVersion1(IStorageFile file, out string? rejectedBecause)
    {
        var length = file.Length;
        if (length > Array.MaxLength)
        {
            rejectedBecause = $"snapshot has impossible length {length}";
            return null;
        }
        var bytes = GC.AllocateUninitializedArray<byte>((int)length);
        if (file.Read(0, bytes) != length)
        {
            rejectedBecause = "snapshot shorter than its length";
            return null;
        }
        var body = bytes.AsSpan(0, bytes.Length - 4);
        if (Crc32.HashToUInt32(body) != BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4)))
        {
            rejectedBecause = "snapshot CRC mismatch";
            return null;
        }
        var (sequence, nextSegmentId, segmentCount, pendingCount, entryCount) = ReadCounts(body);
        var position = Version1HeaderSize;
        var segments = ReadSegments(body, segmentCount, ref position);
        var entries = new List<KeyValuePair<byte[], IndexEntry>>((int)Math.Min(entryCount, body.Length / (2 + EntryFixedSize)));
        var reader = new SectionReader(body[position..], entryCount);
        while (reader.TryNext(out var key, out var entry))
        {
            entries.Add(new(key.ToArray(), entry));
        }
        if (!reader.Complete)
        {
            throw new ArgumentOutOfRangeException(nameof(file));
        }
        position += reader.Consumed;
        var pending = ReadPending(body, pendingCount, ref position);
        if (position != body.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(file));
        }
        rejectedBecause = null;
        return new SnapshotHead(Version1, sequence, nextSegmentId, segments, pending, entryCount, [], entries);
    }

    private static (long Sequence, long NextSegmentId, int Segments, int Pending, long Entries) ReadCounts(ReadOnlySpan<byte> body)
    {
        var segmentCount = BinaryPrimitives.ReadInt32LittleEndian(body[24..]);
        var pendingCount = BinaryPrimitives.ReadInt32LittleEndian(body[28..]);
        var entryCount = BinaryPrimitives.ReadInt64LittleEndian(body[32..]);
        if (segmentCount < 0 || pendingCount < 0 || entryCount < 0 || entryCount > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(body));
        }
        return (BinaryPrimitives.ReadInt64LittleEndian(body[8..]), BinaryPrimitives.ReadInt64LittleEndian(body[16..]), segmentCount, pendingCount, entryCount);
    }

    private static List<SnapshotSegment> ReadSegments(ReadOnlySpan<byte> body, int count, ref int position)
    {
        var segments = new List<SnapshotSegment>(Math.Min(count, body.Length / 29));
        for (var i = 0; i < count; i++)
        {
            var span = body.Slice(position, 29);
            segments.Add(new SnapshotSegment(BinaryPrimitives.ReadUInt32LittleEndian(span), (SegmentKind)span[4],
                BinaryPrimitives.ReadInt64LittleEndian(span[5..]), BinaryPrimitives.ReadInt64LittleEndian(span[13..]),
                BinaryPrimitives.ReadInt64LittleEndian(span[21..])));
            position += 29;
        }
        return segments;
    }

    private static List<SnapshotPending> ReadPending(ReadOnlySpan<byte> body, int count, ref int position)
    {
        var pending = new List<SnapshotPending>(Math.Min(count, body.Length / 54));
        for (var i = 0; i < count; i++)
        {
            var id = TxId.Read(body[position..]);
            var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(body[(position + 16)..]);
            var key = body.Slice(position + 18, keyLength).ToArray();
            var rest = body.Slice(position + 18 + keyLength, 36);
            pending.Add(new SnapshotPending(id, key, BinaryPrimitives.ReadUInt32LittleEndian(rest), BinaryPrimitives.ReadInt64LittleEndian(rest[4..]),
                BinaryPrimitives.ReadInt64LittleEndian(rest[12..]), BinaryPrimitives.ReadInt64LittleEndian(rest[20..]), BinaryPrimitives.ReadInt64LittleEndian(rest[28..])));
            position += 18 + keyLength + 36;
        }
        return pending;
    }

    /// <summary>
    /// Reads one version 2 section into <paramref name="buffer"/> (grown if too small) and checks its CRC; false
    /// when it is short or damaged. Safe to call from several threads for different sections.
    /// </summary>
    public static bool TryReadSection(IStorageFile file, in SnapshotSection section, ref byte[] buffer)
    {
        if (buffer.Length < section.Length)
        {
            buffer = GC.AllocateUninitializedArray<byte>(section.Length);
        }
        var span = buffer.AsSpan(0, section.Length);
        return file.Read(section.Offset, span) == section.Length && Crc32.HashToUInt32(span) == section.Crc;
    }

    /// <summary>Reads and checks a whole snapshot into lists (tests and tools; recovery loads sections in parallel instead).</summary>
    public static SnapshotData? TryRead(IFileSystem fs, string directory, out string? rejectedBecause)
    {
        var head = TryReadHead(fs, directory, out rejectedBecause);
        if (head == null)
        {
            return null;
        }
        if (head.Version1Entries is { } v1)
        {
            return new SnapshotData(head.Sequence, head.NextSegmentId, head.Segments, v1, head.Pending);
        }
        var entries = new List<KeyValuePair<byte[], IndexEntry>>((int)head.EntryCount);
        using var file = fs.Open(Path.Combine(directory, FileName), OpenMode.ReadOnly);
        var buffer = Array.Empty<byte>();
        foreach (var section in head.Sections)
        {
            if (!TryReadSection(file, section, ref buffer))
            {
                rejectedBecause = "snapshot section CRC mismatch";
                return null;
            }
            var reader = new SectionReader(buffer.AsSpan(0, section.Length), section.Count);
            while (reader.TryNext(out var key, out var entry))
            {
                entries.Add(new(key.ToArray(), entry));
            }
            if (!reader.Complete || reader.Consumed != section.Length)
            {
                rejectedBecause = "snapshot counts do not match its contents";
                return null;
            }
        }
        return new SnapshotData(head.Sequence, head.NextSegmentId, head.Segments, entries, head.Pending);
    }
}

/// <summary>Walks the entries of one section (or of a version 1 body) without allocating.</summary>
internal ref struct SectionReader(ReadOnlySpan<byte> bytes, long count)
{
    private readonly ReadOnlySpan<byte> _bytes = bytes;
    private long _left = count;

    public int Consumed { get; private set; }

    /// <summary>Every announced entry was read and none ran past the end.</summary>
    public readonly bool Complete => _left == 0;

    public bool TryNext(out ReadOnlySpan<byte> key, out IndexEntry entry)
    {
        var rest = _bytes[Consumed..];
        if (_left == 0 || rest.Length < 2)
        {
            key = default;
            entry = default;
            return false;
        }
        var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(rest);
        if (rest.Length < 2 + keyLength + IndexSnapshot.EntryFixedSize)
        {
            key = default;
            entry = default;
            return false;
        }
        key = rest.Slice(2, keyLength);
        var f = rest.Slice(2 + keyLength, IndexSnapshot.EntryFixedSize);
        entry = new IndexEntry(BinaryPrimitives.ReadInt64LittleEndian(f), BinaryPrimitives.ReadInt64LittleEndian(f[8..]),
            BinaryPrimitives.ReadInt64LittleEndian(f[16..]), BinaryPrimitives.ReadUInt32LittleEndian(f[24..]), (RecordKind)f[28]);
        // A CRC proves the bytes are what was written, not that the writer was right: an impossible entry makes
        // the whole snapshot untrusted (the store rebuilds from its segments) rather than a crash on a later read.
        if (entry.Sequence < 0 || entry.Offset < 0 || entry.ValueLength < 0)
        {
            key = default;
            return false;
        }
        Consumed += 2 + keyLength + IndexSnapshot.EntryFixedSize;
        _left--;
        return true;
    }
}

internal sealed record SnapshotData(long Sequence, long NextSegmentId, List<SnapshotSegment> Segments,
    List<KeyValuePair<byte[], IndexEntry>> Entries, List<SnapshotPending> Pending);

/// <summary>What a snapshot says outside its entries; a version 1 file's entries come with it.</summary>
internal sealed record SnapshotHead(byte Version, long Sequence, long NextSegmentId, List<SnapshotSegment> Segments, List<SnapshotPending> Pending,
    long EntryCount, SnapshotSection[] Sections, List<KeyValuePair<byte[], IndexEntry>>? Version1Entries);

/// <summary>Where one version 2 section lies in the file, how many entries it holds, and its CRC32.</summary>
internal readonly record struct SnapshotSection(long Offset, int Length, int Count, uint Crc);

internal sealed record SnapshotSegment(uint Id, SegmentKind Kind, long CoveredLength, long MinSequence, long MaxSequence);

internal sealed record SnapshotPending(TxId Id, byte[] Key, uint SegmentId, long Offset, long ValueLength, long Sequence, long PreparedAtMs);
