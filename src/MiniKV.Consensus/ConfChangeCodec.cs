// Byte layout of an encoded ConfChange (the Data of an EntryKind.ConfChange log entry), little-endian:
//   [0]       version, currently 1
//   [1]       ConfChangeKind
//   [2..3]    u16 length of the node id, then the node id in UTF-8
//   [..]      u16 length of the address, then the address in UTF-8
//   [last 4]  CRC-32 (IEEE, System.IO.Hashing.Crc32) of every byte before it
// Version rule: a decoder rejects versions it does not know; a new field means a new version, and every
// node must understand it before any node writes it (log entries are replayed forever).
using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace MiniKV.Consensus;

/// <summary>Encodes and decodes the <see cref="ConfChange"/> carried by a membership log entry.</summary>
public static class ConfChangeCodec
{
    public const byte Version = 1;

    public static byte[] Encode(ConfChange change)
    {
        int idLen = Encoding.UTF8.GetByteCount(change.NodeId);
        int addrLen = Encoding.UTF8.GetByteCount(change.Address);
        if (idLen > ushort.MaxValue || addrLen > ushort.MaxValue)
        {
            throw new ArgumentException("node id or address too long", nameof(change));
        }

        var buf = new byte[2 + 2 + idLen + 2 + addrLen + 4];
        buf[0] = Version;
        buf[1] = (byte)change.Kind;
        BinaryPrimitives.WriteUInt16LittleEndian(buf.AsSpan(2), (ushort)idLen);
        Encoding.UTF8.GetBytes(change.NodeId, buf.AsSpan(4));
        int p = 4 + idLen;
        BinaryPrimitives.WriteUInt16LittleEndian(buf.AsSpan(p), (ushort)addrLen);
        Encoding.UTF8.GetBytes(change.Address, buf.AsSpan(p + 2));
        p += 2 + addrLen;
        BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(p), Crc32.HashToUInt32(buf.AsSpan(0, p)));
        return buf;
    }

    /// <summary>Decodes; null when the bytes are damaged or of an unknown version.</summary>
    public static ConfChange? TryDecode(ReadOnlySpan<byte> data)
    {
        if (data.Length < 10 || data[0] != Version)
        {
            return null;
        }

        int body = data.Length - 4;
        if (Crc32.HashToUInt32(data[..body]) != BinaryPrimitives.ReadUInt32LittleEndian(data[body..]))
        {
            return null;
        }

        var kind = (ConfChangeKind)data[1];
        if (kind is < ConfChangeKind.AddLearner or > ConfChangeKind.Remove)
        {
            return null;
        }

        int idLen = BinaryPrimitives.ReadUInt16LittleEndian(data[2..]);
        if (4 + idLen + 2 > body)
        {
            return null;
        }

        string id = Encoding.UTF8.GetString(data.Slice(4, idLen));
        int p = 4 + idLen;
        int addrLen = BinaryPrimitives.ReadUInt16LittleEndian(data[p..]);
        if (p + 2 + addrLen != body)
        {
            return null;
        }

        string address = Encoding.UTF8.GetString(data.Slice(p + 2, addrLen));
        return new ConfChange(kind, id, address);
    }
}
