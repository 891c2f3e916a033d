using System.Buffers;
using MiniKV.RaftBench;

namespace MiniKV.Consensus.ProcessTests;

public sealed class ClientWireFormatTests
{
    private static readonly Guid Id = Guid.Parse("00112233-4455-6677-8899-aabbccddeeff");

    // Expected bytes computed independently with python3 (struct + zlib.crc32).
    [Fact]
    public void Request_matches_golden_bytes_and_parses_back()
    {
        var buffer = new byte[64];
        var n = ClientWire.WriteRequest(buffer, ClientOp.Propose, 0x0102030405060708, Id, "abc"u8);
        Assert.Equal("210000000101080706050403020133221100554477668899aabbccddeeff616263339edddf", Convert.ToHexStringLower(buffer.AsSpan(0, n)));

        var sequence = new ReadOnlySequence<byte>(buffer, 0, n);
        Assert.Equal(FrameResult.Ok, ClientWire.TryTakeFrame(ref sequence, ClientWire.RequestOverhead, out var frame));
        Assert.Equal(0, sequence.Length);
        var (op, tag, id, payload) = ClientWire.ParseRequest(frame);
        Assert.Equal((ClientOp.Propose, 0x0102030405060708UL, Id, "abc"), (op, tag, id, System.Text.Encoding.ASCII.GetString(payload.Span)));
    }

    [Fact]
    public void Response_matches_golden_bytes_and_parses_back()
    {
        var buffer = new byte[64];
        var n = ClientWire.WriteResponse(buffer, ClientStatus.NotLeader, 7, 42, "n2");
        Assert.Equal(ClientWire.ResponseSize("n2"), n);
        Assert.Equal("18000000010207000000000000002a000000000000006e32ee28fe94", Convert.ToHexStringLower(buffer.AsSpan(0, n)));

        var sequence = new ReadOnlySequence<byte>(buffer, 0, n);
        Assert.Equal(FrameResult.Ok, ClientWire.TryTakeFrame(ref sequence, ClientWire.ResponseOverhead, out var frame));
        Assert.Equal(new Reply(ClientStatus.NotLeader, 42, "n2"), ToReply(ClientWire.ParseResponse(frame)));
    }

    [Fact]
    public void Partial_frame_waits_and_corrupt_frame_is_refused()
    {
        var buffer = new byte[64];
        var n = ClientWire.WriteResponse(buffer, ClientStatus.Applied, 1, 5, null);
        var partial = new ReadOnlySequence<byte>(buffer, 0, n - 1);
        Assert.Equal(FrameResult.Incomplete, ClientWire.TryTakeFrame(ref partial, ClientWire.ResponseOverhead, out _));

        buffer[10] ^= 1;
        var corrupt = new ReadOnlySequence<byte>(buffer, 0, n);
        Assert.Equal(FrameResult.Bad, ClientWire.TryTakeFrame(ref corrupt, ClientWire.ResponseOverhead, out _));
    }

    private static Reply ToReply((ClientStatus Status, ulong Tag, long Value, string? Hint) r) => new(r.Status, r.Value, r.Hint);
}
