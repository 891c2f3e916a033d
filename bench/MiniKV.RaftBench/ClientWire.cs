using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace MiniKV.RaftBench;

/// <summary>
/// The RaftBench node's binary client protocol (its <c>--client</c> TCP port): length-prefixed frames, many requests in
/// flight per connection, answered in any order and matched by tag, so one connection carries many proposers (the way
/// etcd's clients share one gRPC connection) and one read or write system call carries many frames.
/// Layout (little-endian), version 1:
///   request:  length u32 (bytes after this field) | version u8 = 1 | op u8 (1 propose, 2 read) | tag u64 |
///             request id (16 bytes, Guid.TryWriteBytes order) | payload (length - 30 bytes) | CRC-32 (IEEE) u32 of
///             every byte from version to the end of payload
///   response: length u32 | version u8 = 1 | status u8 (<see cref="ClientStatus"/>) | tag u64 | value i64 (applied
///             index, or the applied count for a read) | leader hint (UTF-8, length - 22 bytes, empty when unknown) |
///             CRC-32 (IEEE) u32 of every byte from version to the end of the hint
/// A frame of another version, or with a bad CRC or length, ends the connection. A change of layout bumps the version.
/// </summary>
internal static class ClientWire
{
    public const byte Version = 1;
    public const int RequestOverhead = 4 + 1 + 1 + 8 + 16 + 4;
    public const int ResponseOverhead = 4 + 1 + 1 + 8 + 8 + 4;
    public const int MaxFrame = 1 << 20;

    public static int WriteRequest(Span<byte> dest, ClientOp op, ulong tag, Guid requestId, ReadOnlySpan<byte> payload)
    {
        var length = RequestOverhead + payload.Length;
        BinaryPrimitives.WriteUInt32LittleEndian(dest, (uint)(length - 4));
        dest[4] = Version;
        dest[5] = (byte)op;
        BinaryPrimitives.WriteUInt64LittleEndian(dest[6..], tag);
        requestId.TryWriteBytes(dest[14..]);
        payload.CopyTo(dest[30..]);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[(length - 4)..], Crc32.HashToUInt32(dest[4..(length - 4)]));
        return length;
    }

    public static int WriteResponse(Span<byte> dest, ClientStatus status, ulong tag, long value, string? hint)
    {
        var hintLength = hint is null ? 0 : Encoding.UTF8.GetBytes(hint, dest[22..]);
        var length = ResponseOverhead + hintLength;
        BinaryPrimitives.WriteUInt32LittleEndian(dest, (uint)(length - 4));
        dest[4] = Version;
        dest[5] = (byte)status;
        BinaryPrimitives.WriteUInt64LittleEndian(dest[6..], tag);
        BinaryPrimitives.WriteInt64LittleEndian(dest[14..], value);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[(length - 4)..], Crc32.HashToUInt32(dest[4..(length - 4)]));
        return length;
    }

    public static int ResponseSize(string? hint) => ResponseOverhead + (hint is null ? 0 : Encoding.UTF8.GetByteCount(hint));

    /// <summary>Takes one whole frame off the front of <paramref name="buffer"/>: Incomplete (wait for more bytes), Ok, or Bad.</summary>
    public static FrameResult TryTakeFrame(ref ReadOnlySequence<byte> buffer, int minimum, out byte[] frame)
    {
        frame = [];
        if (buffer.Length < 4)
        {
            return FrameResult.Incomplete;
        }
        Span<byte> prefix = stackalloc byte[4];
        buffer.Slice(0, 4).CopyTo(prefix);
        var length = BinaryPrimitives.ReadUInt32LittleEndian(prefix);
        if (length + 4 < minimum || length > MaxFrame)
        {
            return FrameResult.Bad;
        }
        if (buffer.Length < length + 4)
        {
            return FrameResult.Incomplete;
        }
        frame = buffer.Slice(4, length).ToArray();
        buffer = buffer.Slice(length + 4);
        var body = frame.AsSpan(0, frame.Length - 4);
        return frame[0] == Version && Crc32.HashToUInt32(body) == BinaryPrimitives.ReadUInt32LittleEndian(frame.AsSpan(frame.Length - 4))
            ? FrameResult.Ok
            : FrameResult.Bad;
    }

    /// <summary>Reads a request frame as returned by <see cref="TryTakeFrame"/> (without its length prefix).</summary>
    public static (ClientOp Op, ulong Tag, Guid RequestId, ReadOnlyMemory<byte> Payload) ParseRequest(byte[] frame) =>
        ((ClientOp)frame[1], BinaryPrimitives.ReadUInt64LittleEndian(frame.AsSpan(2)), new Guid(frame.AsSpan(10, 16)),
            frame.AsMemory(26, frame.Length - 30));

    /// <summary>Reads a response frame as returned by <see cref="TryTakeFrame"/> (without its length prefix).</summary>
    public static (ClientStatus Status, ulong Tag, long Value, string? Hint) ParseResponse(byte[] frame)
    {
        var hint = frame.Length > 22 ? Encoding.UTF8.GetString(frame.AsSpan(18, frame.Length - 22)) : null;
        return ((ClientStatus)frame[1], BinaryPrimitives.ReadUInt64LittleEndian(frame.AsSpan(2)),
            BinaryPrimitives.ReadInt64LittleEndian(frame.AsSpan(10)), hint);
    }
}

internal enum ClientOp : byte
{
    Propose = 1,
    Read = 2,
}

internal enum ClientStatus : byte
{
    Applied = 1,
    NotLeader = 2,
    Unknown = 3,
    Rejected = 4,
    ReadOk = 5,
    Starting = 6,
}

internal enum FrameResult
{
    Incomplete,
    Ok,
    Bad,
}
