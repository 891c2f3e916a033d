using System.IO.Hashing;

namespace MiniKV.Coordinator.Metadata.Commands;

/// <summary>
/// The binary form of <see cref="MetadataCommand"/>s as they travel in Raft log entries and sit in the Raft log
/// on disk. Thread-safety: stateless.
/// <code>
/// envelope
/// offset  size  field
///  0      1     format version   1; a reader rejects any other value
///  1      1     kind             1 write batch, 2 register volume, 3 volume state, 4 shards, 5 abort transactions,
///                                6 coordinator addresses, 10 begin rebalance, 11 end rebalance,
///                                12 relocate keys, 13 remove volume (7-9 unused)
///  2      4     payload length N u32
///  6      N     payload          by kind, below
///  6+N    4     CRC32 (IEEE) of bytes [0, 6+N)
///
/// str  = u16 byte length + UTF-8;  bytes = u16 length + bytes;  all integers little-endian
///
/// 1 write batch:  i64 term, i64 modified (Unix ms), u16 count, then count writes:
///                 u8 kind (1 put, 2 delete), 16 transaction id, bytes key, u64 version, i64 size,
///                 u32 checksum, str content type, u8 flags (bit 0 under-replicated), u8 volume count,
///                 that many str volume ids, u8 condition (0 none, 1 If-Match etag, 2 If-None-Match *,
///                 3 If-Match *), str condition etag
/// 2 register:     str volume id, str http address, str grpc address, i64 capacity bytes, i64 at (Unix ms)
/// 3 volume state: str volume id, u8 state (1 up, 2 down, 3 draining), i64 at (Unix ms)
/// 4 shards:       u16 count, then count times: u16 shard, u8 volume count, that many str volume ids
/// 5 aborts:       u32 count, then count 16-byte transaction ids (the bytes of Guid.TryWriteBytes)
/// 6 coordinator:  str coordinator id, str http address (http://host:port), str grpc address (host:port)
/// 10 begin rebal: str job id, i64 at (Unix ms), then the shards payload of kind 4 (the moving shards' targets)
/// 11 end rebal:   str job id, i64 at (Unix ms)
/// 12 relocate:    u16 count, then count times: bytes key, u64 version, u8 flags (bit 0 under-replicated),
///                 u8 volume count, that many str volume ids
/// 13 remove vol:  str volume id, i64 at (Unix ms)
/// </code>
/// Version rule: the log holds old entries forever (until a snapshot), so a reader decodes every format version
/// ever written; a change of any payload bumps the format version, and a new kind may be added under the same
/// version only because an old reader meeting it fails loudly instead of misapplying it.
/// </summary>
public static class CommandCodec
{
    public const byte FormatVersion = 1;
    private const int HeaderSize = 6;
    private const int CrcSize = 4;

    private enum Kind : byte
    {
        WriteBatch = 1,
        RegisterVolume = 2,
        VolumeState = 3,
        Shards = 4,
        AbortTransactions = 5,
        CoordinatorAddresses = 6,
        BeginRebalance = 10,
        EndRebalance = 11,
        RelocateKeys = 12,
        RemoveVolume = 13,
    }

    public static byte[] Encode(MetadataCommand command)
    {
        var w = new RecordWriter();
        w.U8(FormatVersion);
        w.U8((byte)KindOf(command));
        w.U32(0); // payload length, patched below
        switch (command)
        {
            case WriteBatchCommand batch:
                WriteBatch(w, batch);
                break;
            case RegisterVolumeCommand r:
                w.String16(r.VolumeId);
                w.String16(r.HttpAddress);
                w.String16(r.GrpcAddress);
                w.I64(r.CapacityBytes);
                w.I64(r.AtUnixMs);
                break;
            case SetVolumeStateCommand s:
                w.String16(s.VolumeId);
                w.U8((byte)s.State);
                w.I64(s.AtUnixMs);
                break;
            case SetShardsCommand shards:
                WriteShards(w, shards.Shards);
                break;
            case BeginRebalanceCommand begin:
                w.String16(begin.JobId);
                w.I64(begin.AtUnixMs);
                WriteShards(w, begin.Targets);
                break;
            case EndRebalanceCommand end:
                w.String16(end.JobId);
                w.I64(end.AtUnixMs);
                break;
            case RelocateKeysCommand relocate:
                w.U16(checked((ushort)relocate.Relocations.Count));
                foreach (var k in relocate.Relocations)
                {
                    w.Bytes16(k.Key);
                    w.U64(k.Version);
                    w.U8(k.UnderReplicated ? (byte)1 : (byte)0);
                    Strings8(w, k.Volumes);
                }
                break;
            case RemoveVolumeCommand remove:
                w.String16(remove.VolumeId);
                w.I64(remove.AtUnixMs);
                break;
            case CoordinatorAddressesCommand c:
                w.String16(c.CoordinatorId);
                w.String16(c.HttpAddress);
                w.String16(c.GrpcAddress);
                break;
            case AbortTransactionsCommand aborts:
                w.U32((uint)aborts.Transactions.Count);
                Span<byte> id = stackalloc byte[TxBytes.Size];
                foreach (var tx in aborts.Transactions)
                {
                    tx.TryWriteBytes(id);
                    w.Bytes(id);
                }
                break;
        }
        w.PatchU32(2, (uint)(w.Length - HeaderSize));
        w.U32(Crc32.HashToUInt32(w.Written));
        return w.ToArray();
    }

    public static MetadataCommand Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < HeaderSize + CrcSize)
        {
            throw new CommandFormatException($"a command of {data.Length} bytes is shorter than its envelope");
        }
        var body = data[..^CrcSize];
        var stored = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(data[^CrcSize..]);
        if (Crc32.HashToUInt32(body) != stored)
        {
            throw new CommandFormatException("the command's CRC does not match its bytes");
        }
        if (data[0] != FormatVersion)
        {
            throw new CommandFormatException($"command format version {data[0]} is not supported (this build reads {FormatVersion})");
        }
        var length = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(data[2..]);
        if (length != body.Length - HeaderSize)
        {
            throw new CommandFormatException($"the command says its payload is {length} bytes but it carries {body.Length - HeaderSize}");
        }
        var r = new RecordReader(body[HeaderSize..]);
        MetadataCommand command = (Kind)data[1] switch
        {
            Kind.WriteBatch => ReadBatch(ref r),
            Kind.RegisterVolume => new RegisterVolumeCommand(r.String16(), r.String16(), r.String16(), r.I64(), r.I64()),
            Kind.VolumeState => new SetVolumeStateCommand(r.String16(), ReadState(r.U8()), r.I64()),
            Kind.Shards => new SetShardsCommand(ReadShards(ref r)),
            Kind.BeginRebalance => new BeginRebalanceCommand(r.String16(), r.I64(), ReadShards(ref r)),
            Kind.EndRebalance => new EndRebalanceCommand(r.String16(), r.I64()),
            Kind.RelocateKeys => ReadRelocations(ref r),
            Kind.RemoveVolume => new RemoveVolumeCommand(r.String16(), r.I64()),
            Kind.AbortTransactions => ReadAborts(ref r),
            Kind.CoordinatorAddresses => new CoordinatorAddressesCommand(r.String16(), r.String16(), r.String16()),
            var other => throw new CommandFormatException($"unknown command kind {(byte)other}"),
        };
        r.ExpectEnd();
        return command;
    }

    private static Kind KindOf(MetadataCommand command) => command switch
    {
        WriteBatchCommand => Kind.WriteBatch,
        RegisterVolumeCommand => Kind.RegisterVolume,
        SetVolumeStateCommand => Kind.VolumeState,
        SetShardsCommand => Kind.Shards,
        AbortTransactionsCommand => Kind.AbortTransactions,
        CoordinatorAddressesCommand => Kind.CoordinatorAddresses,
        BeginRebalanceCommand => Kind.BeginRebalance,
        EndRebalanceCommand => Kind.EndRebalance,
        RelocateKeysCommand => Kind.RelocateKeys,
        RemoveVolumeCommand => Kind.RemoveVolume,
        _ => throw new ArgumentException($"no encoding for {command.GetType().Name}", nameof(command)),
    };

    private static void WriteBatch(RecordWriter w, WriteBatchCommand batch)
    {
        w.I64(batch.Term);
        w.I64(batch.ModifiedUnixMs);
        w.U16(checked((ushort)batch.Writes.Count));
        Span<byte> id = stackalloc byte[TxBytes.Size];
        foreach (var write in batch.Writes)
        {
            w.U8((byte)write.Kind);
            write.Transaction.TryWriteBytes(id);
            w.Bytes(id);
            w.Bytes16(write.Key);
            w.U64(write.Version);
            w.I64(write.Size);
            w.U32(write.Checksum);
            w.String16(write.ContentType);
            w.U8(write.UnderReplicated ? (byte)1 : (byte)0);
            Strings8(w, write.Volumes);
            w.U8((byte)write.Condition);
            w.String16(write.ConditionEtag);
        }
    }

    private static WriteBatchCommand ReadBatch(ref RecordReader r)
    {
        var term = r.I64();
        var modified = r.I64();
        var count = r.U16();
        var writes = new KeyWrite[count];
        for (var i = 0; i < count; i++)
        {
            var kind = r.U8() switch
            {
                1 => WriteKind.Put,
                2 => WriteKind.Delete,
                var k => throw new CommandFormatException($"unknown write kind {k}"),
            };
            var tx = TxBytes.Read(r.Bytes(TxBytes.Size));
            var key = r.Bytes16();
            var version = r.U64();
            var size = r.I64();
            var checksum = r.U32();
            var contentType = r.String16();
            var flags = r.U8();
            if ((flags & ~1) != 0)
            {
                throw new CommandFormatException($"unknown write flags 0x{flags:x2}");
            }
            var volumes = ReadStrings8(ref r);
            var condition = r.U8() switch
            {
                0 => WriteCondition.None,
                1 => WriteCondition.IfMatch,
                2 => WriteCondition.IfNoneMatchAny,
                3 => WriteCondition.IfMatchAny,
                var c => throw new CommandFormatException($"unknown write condition {c}"),
            };
            writes[i] = new KeyWrite(kind, tx, key, version, size, checksum, contentType, volumes, (flags & 1) != 0, condition, r.String16());
        }
        return new WriteBatchCommand(term, modified, writes);
    }

    private static void WriteShards(RecordWriter w, IReadOnlyList<ShardAssignment> shards)
    {
        w.U16(checked((ushort)shards.Count));
        foreach (var a in shards)
        {
            w.U16(checked((ushort)a.Shard));
            Strings8(w, a.Volumes);
        }
    }

    private static ShardAssignment[] ReadShards(ref RecordReader r)
    {
        var count = r.U16();
        var shards = new ShardAssignment[count];
        for (var i = 0; i < count; i++)
        {
            var shard = r.U16();
            if (shard >= Common.Shards.Count)
            {
                throw new CommandFormatException($"shard {shard} is out of range; shards are 0 to {Common.Shards.Count - 1}");
            }
            shards[i] = new ShardAssignment(shard, ReadStrings8(ref r));
        }
        return shards;
    }

    private static RelocateKeysCommand ReadRelocations(ref RecordReader r)
    {
        var count = r.U16();
        var relocations = new KeyRelocation[count];
        for (var i = 0; i < count; i++)
        {
            var key = r.Bytes16();
            var version = r.U64();
            var flags = r.U8();
            if ((flags & ~1) != 0)
            {
                throw new CommandFormatException($"unknown relocation flags 0x{flags:x2}");
            }
            relocations[i] = new KeyRelocation(key, version, ReadStrings8(ref r), (flags & 1) != 0);
        }
        return new RelocateKeysCommand(relocations);
    }

    private static AbortTransactionsCommand ReadAborts(ref RecordReader r)
    {
        var count = r.U32();
        if (count > (uint)r.Remaining / TxBytes.Size)
        {
            throw new CommandFormatException($"{count} transaction ids do not fit in {r.Remaining} bytes");
        }
        var ids = new Guid[count];
        for (var i = 0; i < ids.Length; i++)
        {
            ids[i] = TxBytes.Read(r.Bytes(TxBytes.Size));
        }
        return new AbortTransactionsCommand(ids);
    }

    private static VolumeState ReadState(byte state) => state switch
    {
        1 => VolumeState.Up,
        2 => VolumeState.Down,
        3 => VolumeState.Draining,
        _ => throw new CommandFormatException($"unknown volume state {state}"),
    };

    internal static void Strings8(RecordWriter w, IReadOnlyList<string> values)
    {
        w.U8(checked((byte)values.Count));
        foreach (var v in values)
        {
            w.String16(v);
        }
    }

    internal static string[] ReadStrings8(ref RecordReader r)
    {
        var values = new string[r.U8()];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = r.String16();
        }
        return values;
    }
}
