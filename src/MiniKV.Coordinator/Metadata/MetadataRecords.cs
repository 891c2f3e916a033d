using System.Buffers.Binary;
using System.IO.Hashing;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Coordinator.Metadata;

/// <summary>
/// The binary values <see cref="MetadataStateMachine"/> keeps in RocksDB. Every value ends with a CRC32 of the
/// bytes before it (RocksDB checks its blocks too, but this catches a bug or a hand-edited DB at the record).
/// <code>
/// column family "keys": key = the key's bytes; value =
///   u8 format version (1), u64 version, i64 size, u32 checksum, i64 modified (Unix ms), u8 flags (bit 0
///   under-replicated), 16 transaction id, str content type, u8 volume count, that many str volume ids, u32 CRC
/// column family "volumes": key = the volume id (UTF-8); value =
///   u8 format version (1), str http, str grpc, u8 state, i64 capacity, i64 registered (Unix ms),
///   i64 state changed (Unix ms), u32 CRC
/// column family "shards": key = u16 shard, big-endian (so iteration is in shard order); value =
///   u8 format version (1), u8 volume count, that many str volume ids, u32 CRC
/// column family "transactions": key = the 16-byte transaction id; value =
///   u8 format version (1), u8 outcome (1 committed, 2 aborted), i64 log index, u32 CRC
/// column family "meta": "applied_index" = i64; "last_version" = u64 (largest version ever assigned);
///   "coord/{id}" = u8 format version (1), str http, str grpc, u32 CRC;
///   "rebalance" (only while one runs) = u8 format version (1), str job id, i64 began (Unix ms), u16 shards, u32 CRC
/// </code>
/// str = u16 byte length + UTF-8; integers little-endian unless said. Version rule: a reader accepts every
/// format version ever written; a layout change bumps the version byte of that record kind.
/// </summary>
internal static class MetadataRecords
{
    public const byte FormatVersion = 1;

    public static byte[] EncodeKey(KeyRecord record)
    {
        var w = new RecordWriter(64 + record.ContentType.Length + (record.Volumes.Count * 16));
        w.U8(FormatVersion);
        w.U64(record.Version);
        w.I64(record.Size);
        w.U32(record.Checksum);
        w.I64(record.ModifiedUnixMs);
        w.U8(record.UnderReplicated ? (byte)1 : (byte)0);
        Span<byte> id = stackalloc byte[TxBytes.Size];
        record.Transaction.TryWriteBytes(id);
        w.Bytes(id);
        w.String16(record.ContentType);
        CommandCodec.Strings8(w, record.Volumes);
        return Seal(w);
    }

    public static KeyRecord DecodeKey(byte[] key, ReadOnlySpan<byte> value)
    {
        var r = Open(value, "key");
        var version = r.U64();
        var size = r.I64();
        var checksum = r.U32();
        var modified = r.I64();
        var flags = r.U8();
        var tx = TxBytes.Read(r.Bytes(TxBytes.Size));
        var contentType = r.String16();
        var volumes = CommandCodec.ReadStrings8(ref r);
        r.ExpectEnd();
        return new KeyRecord(key, version, size, checksum, contentType, modified, volumes, (flags & 1) != 0, tx);
    }

    public static byte[] EncodeVolume(VolumeRecord record)
    {
        var w = new RecordWriter();
        w.U8(FormatVersion);
        w.String16(record.HttpAddress);
        w.String16(record.GrpcAddress);
        w.U8((byte)record.State);
        w.I64(record.CapacityBytes);
        w.I64(record.RegisteredUnixMs);
        w.I64(record.StateChangedUnixMs);
        return Seal(w);
    }

    public static VolumeRecord DecodeVolume(string id, ReadOnlySpan<byte> value)
    {
        var r = Open(value, "volume");
        var record = new VolumeRecord(id, r.String16(), r.String16(), (VolumeState)r.U8(), r.I64(), r.I64(), r.I64());
        r.ExpectEnd();
        return record;
    }

    public static byte[] ShardKey(int shard)
    {
        var key = new byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(key, (ushort)shard);
        return key;
    }

    public static byte[] EncodeShard(IReadOnlyList<string> volumes)
    {
        var w = new RecordWriter();
        w.U8(FormatVersion);
        CommandCodec.Strings8(w, volumes);
        return Seal(w);
    }

    public static string[] DecodeShard(ReadOnlySpan<byte> value)
    {
        var r = Open(value, "shard");
        var volumes = CommandCodec.ReadStrings8(ref r);
        r.ExpectEnd();
        return volumes;
    }

    public static byte[] EncodeTransaction(TransactionOutcomeKind outcome, long index)
    {
        var w = new RecordWriter(18);
        w.U8(FormatVersion);
        w.U8((byte)outcome);
        w.I64(index);
        return Seal(w);
    }

    public static (TransactionOutcomeKind Outcome, long Index) DecodeTransaction(ReadOnlySpan<byte> value)
    {
        var r = Open(value, "transaction");
        var outcome = (TransactionOutcomeKind)r.U8();
        var index = r.I64();
        r.ExpectEnd();
        return (outcome, index);
    }

    public static byte[] EncodeCoordinator(CoordinatorAddressesCommand coordinator)
    {
        var w = new RecordWriter();
        w.U8(FormatVersion);
        w.String16(coordinator.HttpAddress);
        w.String16(coordinator.GrpcAddress);
        return Seal(w);
    }

    public static CoordinatorAddressesCommand DecodeCoordinator(string id, ReadOnlySpan<byte> value)
    {
        var r = Open(value, "coordinator");
        var record = new CoordinatorAddressesCommand(id, r.String16(), r.String16());
        r.ExpectEnd();
        return record;
    }

    public static byte[] EncodeRebalance(RebalanceInProgress rebalance)
    {
        var w = new RecordWriter();
        w.U8(FormatVersion);
        w.String16(rebalance.JobId);
        w.I64(rebalance.AtUnixMs);
        w.U16(checked((ushort)rebalance.Shards));
        return Seal(w);
    }

    public static RebalanceInProgress DecodeRebalance(ReadOnlySpan<byte> value)
    {
        var r = Open(value, "rebalance");
        var record = new RebalanceInProgress(r.String16(), r.I64(), r.U16());
        r.ExpectEnd();
        return record;
    }

    private static byte[] Seal(RecordWriter w)
    {
        w.U32(Crc32.HashToUInt32(w.Written));
        return w.ToArray();
    }

    private static RecordReader Open(ReadOnlySpan<byte> value, string kind)
    {
        if (value.Length < 5)
        {
            throw new CommandFormatException($"a stored {kind} record of {value.Length} bytes is too short");
        }
        if (Crc32.HashToUInt32(value[..^4]) != BinaryPrimitives.ReadUInt32LittleEndian(value[^4..]))
        {
            throw new CommandFormatException($"a stored {kind} record fails its CRC");
        }
        if (value[0] != FormatVersion)
        {
            throw new CommandFormatException($"stored {kind} record format version {value[0]} is not supported");
        }
        var r = new RecordReader(value[1..^4]);
        return r;
    }
}
