using System.Buffers.Binary;
using System.IO.Hashing;
using MiniKV.Storage.Segments;

namespace MiniKV.Storage.Tests.Fuzz;

/// <summary>Which decoder a damaged file feeds.</summary>
internal enum FileClass
{
    /// <summary>Log, compacted and blob segments: RecordScanner and record reads.</summary>
    Records,
    Wal,
    Snapshot,
    Bloom,
}

/// <summary>One damaged file: its new content (null: deleted) and what was done, in words for the failure message.</summary>
internal sealed record Mutation(string Path, FileClass Class, byte[]? Content, string Description, bool CrcFixed);

/// <summary>
/// Seeded damage to one file of a store image: bit flips, truncation, random bytes, zeroed ranges, a garbage
/// tail, deletion, and lying length fields in record or file headers. With <c>fixCrc</c> the checksums covering
/// the damage are recomputed, so the decoders behind the CRC checks (bounds, lengths, counts) see it too.
/// </summary>
internal static class Mutator
{
    public static FileClass Classify(string path) => Path.GetFileName(path) switch
    {
        "index.snap" => FileClass.Snapshot,
        "index.bloom" => FileClass.Bloom,
        var n when n.EndsWith(".wal", StringComparison.Ordinal) => FileClass.Wal,
        _ => FileClass.Records,
    };

    public static Mutation Mutate(Random random, string path, byte[] original)
    {
        var kind = Classify(path);
        var bytes = (byte[])original.Clone();
        var fixCrc = random.Next(3) == 0;
        string what;
        switch (random.Next(8))
        {
            case 0:
                var flips = random.Next(1, 9);
                var at = new List<string>();
                for (var i = 0; i < flips && bytes.Length > 0; i++)
                {
                    var offset = random.Next(bytes.Length);
                    var bit = random.Next(8);
                    bytes[offset] ^= (byte)(1 << bit);
                    at.Add($"{offset}.{bit}");
                }
                what = $"flip bits {string.Join(",", at)}";
                break;
            case 1:
                var length = random.Next(bytes.Length + 1);
                bytes = bytes[..length];
                what = $"truncate {original.Length} -> {length}";
                fixCrc = false;
                break;
            case 2:
                var start = random.Next(bytes.Length + 1);
                var count = Math.Min(random.Next(1, 65), bytes.Length - start);
                random.NextBytes(bytes.AsSpan(start, count));
                what = $"random bytes [{start}, {start + count})";
                break;
            case 3:
                var zeroAt = random.Next(bytes.Length + 1);
                var zeros = Math.Min(random.Next(1, 4097), bytes.Length - zeroAt);
                bytes.AsSpan(zeroAt, zeros).Clear();
                what = $"zero [{zeroAt}, {zeroAt + zeros})";
                break;
            case 4:
                var tail = new byte[random.Next(1, 200)];
                random.NextBytes(tail);
                if (random.Next(2) == 0 && tail.Length >= 4)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(tail, RecordFormat.Magic); // a tail that starts like a record
                }
                bytes = [.. bytes, .. tail];
                what = $"append {tail.Length} bytes";
                fixCrc = false;
                break;
            case 5:
                return new Mutation(path, kind, null, "delete the file", false);
            default:
                what = LieAboutALength(random, kind, bytes);
                break;
        }
        if (fixCrc)
        {
            FixCrcs(kind, bytes);
            what += " (CRCs recomputed)";
        }
        return new Mutation(path, kind, bytes, what, fixCrc);
    }

    private static long Interesting(Random random, long actual) => random.Next(8) switch
    {
        0 => 0,
        1 => 1,
        2 => -1,
        3 => long.MaxValue,
        4 => actual + 1,
        5 => actual - 1,
        6 => int.MaxValue,
        _ => random.NextInt64(0, 1L << 40),
    };

    /// <summary>Overwrites a length or count field with an interesting value: of a record header, or of the file header.</summary>
    private static string LieAboutALength(Random random, FileClass kind, byte[] bytes)
    {
        var headerStart = kind == FileClass.Wal ? 32 : 0;
        if (kind is FileClass.Records or FileClass.Wal)
        {
            var records = StoreImage.RecordOffsets(bytes[headerStart..]);
            if (records.Count > 0)
            {
                var record = headerStart + (int)records[random.Next(records.Count)];
                if (random.Next(2) == 0)
                {
                    var value = (ushort)Interesting(random, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(record + 6)));
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(record + 6), value);
                    return $"record at {record}: key length {value}";
                }
                var length = Interesting(random, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(record + 8)));
                BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(record + 8), length);
                return $"record at {record}: value length {length}";
            }
        }
        // File headers: snapshot counts at 24 (i32), 28 (i32), 32 (i64), section count 40 (i32), head length 44 (i32); bloom k at 6 (u16), counts at 8..39; WAL offsets at 12, 20.
        (int Offset, int Size)[] fields = kind switch
        {
            FileClass.Snapshot => [(8, 8), (16, 8), (24, 4), (28, 4), (32, 8), (40, 4), (44, 4)],
            FileClass.Bloom => [(6, 2), (8, 8), (16, 8), (24, 8), (32, 8)],
            _ => [(8, 4), (12, 8), (20, 8)],
        };
        var (offset, size) = fields[random.Next(fields.Length)];
        if (bytes.Length < offset + size)
        {
            return "length field beyond the end (no change)";
        }
        var v = Interesting(random, 0);
        switch (size)
        {
            case 2:
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(offset), (ushort)v);
                break;
            case 4:
                BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(offset), (int)v);
                break;
            default:
                BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(offset), v);
                break;
        }
        return $"header field at {offset} ({size} bytes) = {v}";
    }

    /// <summary>Recomputes the CRCs the format defines, so the damage passes them.</summary>
    public static void FixCrcs(FileClass kind, byte[] bytes)
    {
        switch (kind)
        {
            case FileClass.Snapshot when bytes.Length >= 48 && bytes[4] == 2:
                FixSnapshotV2Crcs(bytes);
                break;
            case FileClass.Snapshot when bytes.Length >= 4:
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4), Crc32.HashToUInt32(bytes.AsSpan(0, bytes.Length - 4)));
                break;
            case FileClass.Bloom when bytes.Length >= 44:
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(40), Crc32.HashToUInt32(bytes.AsSpan(0, 40)));
                for (var page = 44; page + 4 <= bytes.Length; page += 4096 + 4)
                {
                    var size = Math.Min(4096, bytes.Length - page - 4);
                    BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(page + size), Crc32.HashToUInt32(bytes.AsSpan(page, size)));
                }
                break;
            case FileClass.Wal when bytes.Length >= 32:
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(28), Crc32.HashToUInt32(bytes.AsSpan(0, 28)));
                FixRecordCrcs(bytes, 32);
                break;
            case FileClass.Records:
                FixRecordCrcs(bytes, 0);
                break;
        }
    }

    /// <summary>
    /// Version 2 (IndexSnapshot): the section table sits just before the head CRC at head length - 4; each section's
    /// CRC covers its bytes, laid back to back from head length; the head CRC covers every byte before it. Fields the
    /// damage made impossible (a head length or section length outside the file) leave the CRCs they would locate alone.
    /// </summary>
    private static void FixSnapshotV2Crcs(byte[] bytes)
    {
        var sections = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(40));
        var headLength = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(44));
        if (headLength < 48 || headLength > bytes.Length || sections < 0 || (long)sections * 16 > headLength - 48)
        {
            return;
        }
        var table = headLength - 4 - sections * 16;
        long at = headLength;
        for (var i = 0; i < sections; i++)
        {
            var length = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(table + i * 16 + 4));
            if (length < 0 || at + length > bytes.Length)
            {
                break;
            }
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(table + i * 16 + 12), Crc32.HashToUInt32(bytes.AsSpan((int)at, (int)length)));
            at += length;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(headLength - 4), Crc32.HashToUInt32(bytes.AsSpan(0, headLength - 4)));
    }

    /// <summary>Header CRC = CRC32(header[0,24) + key); record CRC = CRC32(key + value + header[0,28)), per RecordFormat.</summary>
    private static void FixRecordCrcs(byte[] bytes, int start)
    {
        foreach (var relative in StoreImage.RecordOffsets(bytes[start..]))
        {
            var r = start + (int)relative;
            var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(r + 6));
            var valueLength = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(r + 8));
            if (valueLength < 0 || valueLength > bytes.Length || r + 32L + keyLength + valueLength > bytes.Length || r + 32L > bytes.Length)
            {
                return;
            }
            var key = bytes.AsSpan(r + 32, keyLength);
            var headerCrc = new Crc32();
            headerCrc.Append(bytes.AsSpan(r, 24));
            headerCrc.Append(key);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(r + 24), headerCrc.GetCurrentHashAsUInt32());
            var recordCrc = new Crc32();
            recordCrc.Append(key);
            recordCrc.Append(bytes.AsSpan(r + 32 + keyLength, checked((int)valueLength)));
            recordCrc.Append(bytes.AsSpan(r, 28));
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(r + 28), recordCrc.GetCurrentHashAsUInt32());
        }
    }
}
