using MiniKV.Storage.Index;
using MiniKV.Storage.Segments;
using MiniKV.Storage.Snapshots;
using MiniKV.Storage.Wal;

namespace MiniKV.Storage.Tests;

/// <summary>
/// Freezes the on-disk formats. If one of these fails, a file written by an older build may no longer be
/// readable: bump the format's version and keep reading the old one instead of editing the expected bytes.
/// </summary>
public class FormatGoldenTests
{
    [Fact]
    public void Record_format_constants_are_frozen()
    {
        Assert.Equal(0x5256_4B4Du, RecordFormat.Magic);
        Assert.Equal(1, RecordFormat.Version);
        Assert.Equal(32, RecordFormat.HeaderSize);
        Assert.Equal(1024, RecordFormat.MaxKeyLength);
        Assert.Equal(24, RecordFormat.PreparePrefixSize);
        Assert.Equal(28, RecordFormat.DecisionValueSize);
        Assert.Equal(1, (int)RecordKind.Put);
        Assert.Equal(2, (int)RecordKind.Tombstone);
        Assert.Equal(3, (int)RecordKind.Prepare);
        Assert.Equal(4, (int)RecordKind.Commit);
        Assert.Equal(5, (int)RecordKind.Abort);
    }

    [Fact]
    public void Put_record_bytes_are_frozen()
    {
        var record = new byte[32 + 3 + 5];
        var written = RecordFormat.Encode(record, RecordKind.Put, "key"u8, "value"u8, 0x0102030405060708);
        Assert.Equal(40, written);
        Assert.Equal(RecordGolden, Convert.ToHexString(record));
        Assert.Equal("MKVR", System.Text.Encoding.ASCII.GetString(record, 0, 4));
        Assert.True(RecordFormat.TryParseHeader(record, out var header, out _));
        Assert.Equal(new RecordHeader(RecordKind.Put, 3, 5, 0x0102030405060708, header.RecordCrc), header);
        Assert.True(RecordFormat.VerifyRecord(record, header));
    }

    [Fact]
    public void Tombstone_record_bytes_are_frozen()
    {
        var record = new byte[32 + 1];
        RecordFormat.Encode(record, RecordKind.Tombstone, "k"u8, [], 7);
        Assert.Equal(TombstoneGolden, Convert.ToHexString(record));
    }

    [Fact]
    public void Every_single_bit_flip_in_a_record_is_detected()
    {
        var record = new byte[32 + 3 + 5];
        RecordFormat.Encode(record, RecordKind.Put, "key"u8, "value"u8, 42);
        for (var bit = 0; bit < record.Length * 8; bit++)
        {
            var damaged = (byte[])record.Clone();
            damaged[bit / 8] ^= (byte)(1 << (bit % 8));
            var ok = RecordFormat.TryParseHeader(damaged, out var header, out _)
                && header.RecordSize == damaged.Length
                && RecordFormat.VerifyRecord(damaged, header);
            Assert.False(ok, $"flip of bit {bit} went unnoticed");
        }
    }

    [Fact]
    public void Wal_header_bytes_are_frozen()
    {
        Assert.Equal(32, WalFile.HeaderSize);
        var header = new byte[WalFile.HeaderSize];
        WalFile.WriteHeader(header, 3, 4096, 99);
        Assert.Equal(WalGolden, Convert.ToHexString(header));
        Assert.Equal("MWAL", System.Text.Encoding.ASCII.GetString(header, 0, 4));
    }

    [Fact]
    public void Snapshot_bytes_are_frozen_and_round_trip()
    {
        var fs = new MiniKV.Testing.FaultyFileSystem();
        fs.CreateDirectory("/d");
        var data = GoldenData();
        IndexSnapshot.Write(fs, "/d", data, sectionCount: 1);
        var bytes = fs.ReadAllBytes("/d/" + IndexSnapshot.FileName);
        Assert.Equal(SnapshotGolden, Convert.ToHexString(bytes));
        Assert.Equal("MKPS", System.Text.Encoding.ASCII.GetString(bytes, 0, 4));
        AssertReadsBack(fs, data);
    }

    [Fact]
    public void Version_1_snapshots_are_still_read()
    {
        var fs = new MiniKV.Testing.FaultyFileSystem();
        fs.CreateDirectory("/d");
        using (var file = fs.Open("/d/" + IndexSnapshot.FileName, MiniKV.Storage.IO.OpenMode.CreateNew))
        {
            file.Write(0, Convert.FromHexString(SnapshotVersion1Golden));
        }
        AssertReadsBack(fs, GoldenData());
    }

    [Fact]
    public void Snapshot_sections_round_trip_for_many_keys()
    {
        var fs = new MiniKV.Testing.FaultyFileSystem();
        fs.CreateDirectory("/d");
        var entries = new List<KeyValuePair<byte[], IndexEntry>>();
        for (var i = 0; i < 1000; i++)
        {
            entries.Add(new(System.Text.Encoding.UTF8.GetBytes($"key-{i}"), new IndexEntry(i + 1, i * 10L, i, (uint)(1 + (i % 3)), i % 7 == 0 ? RecordKind.Tombstone : RecordKind.Put)));
        }
        IndexSnapshot.Write(fs, "/d", new SnapshotData(5000, 9, [], entries, []));
        var head = IndexSnapshot.TryReadHead(fs, "/d", out _);
        Assert.NotNull(head);
        Assert.Equal(64, head.Sections.Length);
        Assert.Equal(1000, head.Sections.Sum(s => s.Count));
        var read = IndexSnapshot.TryRead(fs, "/d", out var why);
        Assert.Null(why);
        Assert.NotNull(read);
        Assert.Equal(
            entries.Select(e => (System.Text.Encoding.UTF8.GetString(e.Key), e.Value)).OrderBy(e => e.Item1, StringComparer.Ordinal),
            read.Entries.Select(e => (System.Text.Encoding.UTF8.GetString(e.Key), e.Value)).OrderBy(e => e.Item1, StringComparer.Ordinal));
    }

    private static SnapshotData GoldenData() => new(77, 5,
        [new SnapshotSegment(1, SegmentKind.Log, 100, 1, 9)],
        [new(System.Text.Encoding.UTF8.GetBytes("ab"), new IndexEntry(9, 60, 4, 1, RecordKind.Put))],
        [new SnapshotPending(new TxId(1, 2), System.Text.Encoding.UTF8.GetBytes("c"), 1, 80, 3, 8, 1_700_000_000_000)]);

    private static void AssertReadsBack(MiniKV.Testing.FaultyFileSystem fs, SnapshotData data)
    {
        var read = IndexSnapshot.TryRead(fs, "/d", out var why);
        Assert.NotNull(read);
        Assert.Null(why);
        Assert.Equal(77, read.Sequence);
        Assert.Equal(5, read.NextSegmentId);
        Assert.Equal(data.Segments, read.Segments);
        Assert.Equal("ab"u8.ToArray(), read.Entries[0].Key);
        Assert.Equal(data.Entries[0].Value, read.Entries[0].Value);
        Assert.Equal(data.Pending[0] with { Key = read.Pending[0].Key }, read.Pending[0]);
        Assert.Equal("c"u8.ToArray(), read.Pending[0].Key);
    }

    [Fact]
    public void Any_bit_flip_in_a_snapshot_rejects_it()
    {
        var fs = new MiniKV.Testing.FaultyFileSystem();
        fs.CreateDirectory("/d");
        IndexSnapshot.Write(fs, "/d", new SnapshotData(1, 2, [], [new("x"u8.ToArray(), new IndexEntry(1, 0, 1, 1, RecordKind.Put))], []));
        var path = "/d/" + IndexSnapshot.FileName;
        var length = fs.ReadAllBytes(path).Length;
        for (var bit = 0; bit < length * 8; bit++)
        {
            fs.FlipBit(path, bit / 8, bit % 8);
            Assert.Null(IndexSnapshot.TryRead(fs, "/d", out _));
            fs.FlipBit(path, bit / 8, bit % 8);
        }
        Assert.NotNull(IndexSnapshot.TryRead(fs, "/d", out _));
    }

    // Computed independently from the documented layouts (Python struct + zlib.crc32), not copied from the code's output.
    private const string RecordGolden =
        "4D4B56520101030005000000000000000807060504030201657D037198A950D86B657976616C7565";
    private const string TombstoneGolden =
        "4D4B56520102010000000000000000000700000000000000445E7C141FD1DBD26B";
    private const string WalGolden =
        "4D57414C010000000300000000100000000000006300000000000000150416B2";
    // Version 2 with one section: head (48-byte header, segments, pending, section table, head CRC), then the section.
    private const string SnapshotGolden =
        "4D4B5053020000004D000000000000000500000000000000010000000100000001000000000000000100000098000000010000000064000000000000000100000000000000090000000000000001000000000000000200000000000000010063010000005000000000000000030000000000000008000000000000000068E5CF8B0100000100000021000000000000008BCA103C62E89D800200616209000000000000003C0000000000000004000000000000000100000001";
    private const string SnapshotVersion1Golden =
        "4D4B5053010000004D0000000000000005000000000000000100000001000000010000000000000001000000006400000000000000010000000000000009000000000000000200616209000000000000003C000000000000000400000000000000010000000101000000000000000200000000000000010063010000005000000000000000030000000000000008000000000000000068E5CF8B0100008F2B4CFB";
}
