using Google.Protobuf;
using MiniKV.Consensus.Grpc;
using MiniKV.Protocol.V1;

namespace MiniKV.Consensus.Tests.Transport;

/// <summary>
/// Freezes the Raft wire format (proto/minikv/internal/v1/raft.proto). The expected bytes were encoded by hand
/// with python3 (varints, zlib.crc32; docs/consensus-io.md), independently of the generated code. A failure means
/// old and new coordinators would no longer understand each other: add fields instead of changing them.
/// </summary>
public class RaftWireFormatGoldenTests
{
    private const string AppendGolden = "08051201611A016220032802300A3A210803100B1801213322110055447766298899AABBCCDDEEFF320268693DAC2A93D84009620163";
    private const string SnapshotGolden = "08091201611A016220045A0E08F40310041A01611A0162220163";

    [Fact]
    public void Enum_numbers_match_the_consensus_enums()
    {
        foreach (var type in Enum.GetValues<MessageType>())
        {
            Assert.Equal(type.ToString(), ((RaftMessageType)(int)type).ToString());
        }
        foreach (var kind in Enum.GetValues<EntryKind>())
        {
            Assert.Equal(kind.ToString(), ((RaftEntryKind)(int)kind).ToString());
        }
    }

    [Fact]
    public void Append_message_bytes_are_frozen()
    {
        var message = new Message
        {
            Type = MessageType.Append,
            From = "a",
            To = "b",
            Term = 3,
            LogTerm = 2,
            Index = 10,
            Commit = 9,
            Context = "c"u8.ToArray(),
            Entries = [new Entry(3, 11, EntryKind.Normal, new Guid("00112233-4455-6677-8899-aabbccddeeff"), "hi"u8.ToArray())],
        };
        var bytes = RaftMessageCodec.ToProto(message).ToByteArray();
        Assert.Equal(AppendGolden, Convert.ToHexString(bytes));

        Assert.Null(RaftMessageCodec.TryFromProto(RaftMessage.Parser.ParseFrom(bytes), out var decoded));
        Assert.Equal(message.Type, decoded!.Type);
        Assert.Equal(message.Index, decoded.Index);
        Assert.Equal(message.Commit, decoded.Commit);
        Assert.True(decoded.Context.Span.SequenceEqual("c"u8));
        Storage.RaftLogTestData.AssertLog(message.Entries, decoded.Entries);
    }

    [Fact]
    public void Snapshot_message_bytes_are_frozen()
    {
        var message = new Message
        {
            Type = MessageType.Snapshot,
            From = "a",
            To = "b",
            Term = 4,
            Snapshot = new SnapshotMetadata(500, 4, new ConfState(["a", "b"], ["c"])),
        };
        Assert.Equal(SnapshotGolden, Convert.ToHexString(RaftMessageCodec.ToProto(message).ToByteArray()));
    }

    [Fact]
    public void Entry_data_is_wrapped_not_copied()
    {
        var data = new byte[] { 1, 2, 3 };
        var proto = RaftMessageCodec.ToProto(new Entry(1, 1, EntryKind.Normal, Guid.Empty, data));
        data[0] = 9; // entries are immutable by contract; this only shows that the wire message shares the array
        Assert.Equal(9, proto.Data[0]);
        Assert.Equal(0ul, proto.RequestIdLow);
        Assert.Equal(0ul, proto.RequestIdHigh);
    }
}
