using System.IO.Hashing;
using MiniKV.Consensus.Storage;
using MiniKV.Storage.Segments;

namespace MiniKV.Consensus.Tests.Storage;

/// <summary>
/// Freezes the Raft log's on-disk formats. The expected bytes were computed independently with python3
/// (struct + zlib.crc32; see docs/consensus-io.md). If one fails, old logs may no longer load: add a new record
/// type or file version instead of editing the bytes.
/// </summary>
public class RaftStorageFormatGoldenTests
{
    private const string EntryGolden =
        "4D4B565201011A0005000000000000002A000000000000000B23323B7561C4BA0101070000000000000033221100554477668899AABBCCDDEEFF68656C6C6F";
    private const string HardStateGolden =
        "4D4B56520101180000000000000000000000000000000000DC89429969C40C6F0207000000000000002900000000000000636F6F72642D32";
    private const string EmptyHardStateGolden =
        "4D4B5652010111000000000000000000000000000000000085F32336CA844F740200000000000000000000000000000000";
    private const string SnapshotMetaGolden =
        "4D4B534E0100000064000000000000000500000000000000030000000000000002000000010000000700636F6F72642D310700636F6F72642D320700636F6F72642D3358B8D43C";

    private static readonly Guid RequestId = new("00112233-4455-6677-8899-aabbccddeeff");

    [Fact]
    public void Constants_are_frozen()
    {
        Assert.Equal(1, (int)RaftRecordType.Entry);
        Assert.Equal(2, (int)RaftRecordType.HardState);
        Assert.Equal(1, (int)EntryKind.Normal);
        Assert.Equal(2, (int)EntryKind.Noop);
        Assert.Equal(3, (int)EntryKind.ConfChange);
        Assert.Equal(26, RaftLogRecord.EntryKeySize);
        Assert.Equal(17, RaftLogRecord.HardStateKeyPrefixSize);
        Assert.Equal(0x4E53_4B4Du, SnapshotMetadataFile.Magic);
        Assert.Equal(1, SnapshotMetadataFile.Version);
        Assert.Equal("snapshot.meta", SnapshotMetadataFile.FileName);
        Assert.Equal("0000000007.raftlog", FileRaftStorage.SegmentFileName(7));
    }

    [Fact]
    public void Entry_record_bytes_are_frozen()
    {
        var entry = new Entry(7, 42, EntryKind.Normal, RequestId, "hello"u8.ToArray());
        var bytes = new byte[RaftLogRecord.EntryRecordSize(entry)];
        Assert.Equal(bytes.Length, RaftLogRecord.EncodeEntry(bytes, entry, new Crc32()));
        Assert.Equal(EntryGolden, Convert.ToHexString(bytes));
    }

    [Fact]
    public void Hard_state_record_bytes_are_frozen()
    {
        var state = new HardState(7, "coord-2", 41);
        var bytes = new byte[RaftLogRecord.HardStateRecordSize(state)];
        RaftLogRecord.EncodeHardState(bytes, state, new Crc32());
        Assert.Equal(HardStateGolden, Convert.ToHexString(bytes));

        var empty = new byte[RaftLogRecord.HardStateRecordSize(default)];
        RaftLogRecord.EncodeHardState(empty, default, new Crc32());
        Assert.Equal(EmptyHardStateGolden, Convert.ToHexString(empty));
    }

    [Fact]
    public void Records_are_the_storage_engines_records_byte_for_byte()
    {
        var entry = new Entry(7, 42, EntryKind.Normal, RequestId, "hello"u8.ToArray());
        var bytes = new byte[RaftLogRecord.EntryRecordSize(entry)];
        RaftLogRecord.EncodeEntry(bytes, entry, new Crc32());
        var key = bytes.AsSpan(RecordFormat.HeaderSize, RaftLogRecord.EntryKeySize).ToArray();
        var engine = new byte[bytes.Length];
        RecordFormat.Encode(engine, RecordKind.Put, key, "hello"u8, 42);
        Assert.Equal(Convert.ToHexString(engine), Convert.ToHexString(bytes));

        Assert.True(RecordFormat.TryParseHeader(bytes, out var header, out _));
        Assert.True(RecordFormat.VerifyRecord(bytes, header));
        Assert.True(RaftLogRecord.TryDecode(key, "hello"u8, header.Sequence, out var decoded, out var state));
        Assert.Null(state);
        Assert.True(RaftLogTestData.SameEntry(entry, decoded!));
    }

    [Fact]
    public void Hard_state_round_trips_with_and_without_a_vote()
    {
        foreach (var state in new[] { new HardState(7, "coord-2", 41), new HardState(3, null, 0), new HardState(long.MaxValue, "ü-node", 9) })
        {
            var bytes = new byte[RaftLogRecord.HardStateRecordSize(state)];
            RaftLogRecord.EncodeHardState(bytes, state, new Crc32());
            Assert.True(RecordFormat.TryParseHeader(bytes, out var header, out _));
            var key = bytes.AsSpan(RecordFormat.HeaderSize, header.KeyLength);
            Assert.True(RaftLogRecord.TryDecode(key, [], header.Sequence, out var entry, out var decoded));
            Assert.Null(entry);
            Assert.Equal(state, decoded);
        }
    }

    [Fact]
    public void Unknown_record_types_are_not_decoded()
    {
        var key = new byte[RaftLogRecord.EntryKeySize];
        key[0] = 9;
        Assert.False(RaftLogRecord.TryDecode(key, [], 1, out _, out _));
        key[0] = (byte)RaftRecordType.Entry;
        key[1] = 0; // no such EntryKind
        Assert.False(RaftLogRecord.TryDecode(key, [], 1, out _, out _));
    }

    /// <summary>Found by RaftLogFuzzTests (seed 1008819561): a damaged key length with recomputed CRCs gave a hard state
    /// whose node id the log could not write back, and loading failed with an ArgumentException, not a storage error.</summary>
    [Fact]
    public void Hard_states_that_could_not_have_been_written_are_not_decoded()
    {
        static byte[] HardStateKey(byte[] vote)
        {
            var key = new byte[RaftLogRecord.HardStateKeyPrefixSize + vote.Length];
            key[0] = (byte)RaftRecordType.HardState;
            vote.CopyTo(key, RaftLogRecord.HardStateKeyPrefixSize);
            return key;
        }
        Assert.True(RaftLogRecord.TryDecode(HardStateKey(Enumerable.Repeat((byte)'n', RaftLogRecord.MaxVoteLength).ToArray()), [], 0, out _, out var longest));
        Assert.Equal(RaftLogRecord.MaxVoteLength, longest!.Value.VotedFor!.Length);
        Assert.False(RaftLogRecord.TryDecode(HardStateKey(Enumerable.Repeat((byte)'n', RaftLogRecord.MaxVoteLength + 1).ToArray()), [], 0, out _, out _));
        Assert.False(RaftLogRecord.TryDecode(HardStateKey([0x6e, 0xff, 0xfe]), [], 0, out _, out _)); // not UTF-8
    }

    [Fact]
    public void Snapshot_metadata_bytes_are_frozen()
    {
        var record = new SnapshotMetadataRecord(new SnapshotMetadata(100, 5, new ConfState(["coord-1", "coord-2"], ["coord-3"])), 3);
        var bytes = SnapshotMetadataFile.Encode(record);
        Assert.Equal(SnapshotMetaGolden, Convert.ToHexString(bytes));

        var decoded = SnapshotMetadataFile.Decode(bytes, "x");
        Assert.Equal(100, decoded.Snapshot.Index);
        Assert.Equal(5, decoded.Snapshot.Term);
        Assert.Equal(3, decoded.FirstSegment);
        Assert.Equal(["coord-1", "coord-2"], decoded.Snapshot.Conf.Voters);
        Assert.Equal(["coord-3"], decoded.Snapshot.Conf.Learners);
    }

    [Fact]
    public void Every_bit_flip_in_snapshot_metadata_is_refused()
    {
        var bytes = SnapshotMetadataFile.Encode(new SnapshotMetadataRecord(new SnapshotMetadata(100, 5, new ConfState(["a", "b"], [])), 1));
        for (var bit = 0; bit < bytes.Length * 8; bit++)
        {
            var damaged = (byte[])bytes.Clone();
            damaged[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.Throws<MiniKV.Storage.CorruptionException>(() => SnapshotMetadataFile.Decode(damaged, "x"));
        }
    }
}
