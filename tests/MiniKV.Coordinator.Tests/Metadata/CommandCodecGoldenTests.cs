using System.Text;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Coordinator.Tests.Metadata;

/// <summary>
/// Freezes the Raft command layout against bytes computed independently by python3 (struct.pack little-endian,
/// zlib.crc32 for the CRC); the script is in the comment of each constant's test.
/// </summary>
public class CommandCodecGoldenTests
{
    private static readonly Guid Tx = new(Convert.FromHexString("08070605040302011817161514131211"));

    // env(1, pack('<qqH', 3, 1700000000123, 2) + put + delete), where
    // put    = [1] + tx + bytes('k/é') + pack('<QqI', 7, 5, 0x3610a686) + str('text/plain') + [1] + [2] + str('v1') + str('v2') + [1] + str('3610a686-5')
    // delete = [2] + pack('<QQ', 0, 9) + bytes('x') + pack('<QqI', 0, 0, 0) + str('') + [0] + [0] + [2] + str('')
    private const string BatchHex =
        "01018f00000003000000000000007b68e5cf8b0100000200010807060504030201181716151413121104006b2fc3a90700000000000000050000000000000086a610360a00746578742f706c61696e01020200763102007632010a0033363130613638362d350200000000000000000900000000000000010078000000000000000000000000000000000000000000000000020000542d2c79";

    private static readonly WriteBatchCommand Batch = new(3, 1700000000123,
    [
        new KeyWrite(WriteKind.Put, Tx, Encoding.UTF8.GetBytes("k/é"), 7, 5, 0x3610a686, "text/plain", ["v1", "v2"], true, WriteCondition.IfMatch, "3610a686-5"),
        new KeyWrite(WriteKind.Delete, new Guid(Convert.FromHexString("00000000000000000900000000000000")), "x"u8.ToArray(), 0, 0, 0, "", [], false, WriteCondition.IfNoneMatchAny, ""),
    ]);

    public static TheoryData<string, MetadataCommand> Golden => new()
    {
        { BatchHex, Batch },
        // env(2, str('vol-1') + str('http://h:6000') + str('h:6001') + pack('<qq', 1 << 40, 1700000000000))
        { "01022e0000000500766f6c2d310d00687474703a2f2f683a363030300600683a3630303100000000000100000068e5cf8b01000024ceeb53", new RegisterVolumeCommand("vol-1", "http://h:6000", "h:6001", 1L << 40, 1700000000000) },
        // env(3, str('vol-1') + [2] + pack('<q', 1700000000001))
        { "0103100000000500766f6c2d31020168e5cf8b0100009b589cce", new SetVolumeStateCommand("vol-1", VolumeState.Down, 1700000000001) },
        // env(4, pack('<H', 2) + pack('<H', 0) + [2] + str('a') + str('b') + pack('<H', 255) + [1] + str('c'))
        { "0104110000000200000002010061010062ff0001010063bc15fff2", new SetShardsCommand([new ShardAssignment(0, ["a", "b"]), new ShardAssignment(255, ["c"])]) },
        // env(5, pack('<I', 1) + tx)
        { "0105140000000100000008070605040302011817161514131211ee15af42", new AbortTransactionsCommand([Tx]) },
        // env(6, str('coord-1') + str('http://h:5000') + str('h:5001'))
        { "0106200000000700636f6f72642d310d00687474703a2f2f683a353030300600683a353030315a69e3a3", new CoordinatorAddressesCommand("coord-1", "http://h:5000", "h:5001") },
        // env(7, bytes('k/é') + pack('<Q', 42) + [1] + [2] + str('v2') + str('v9'))
    };

    [Theory]
    [MemberData(nameof(Golden))]
    public void Encoding_matches_the_independently_computed_bytes(string hex, MetadataCommand command)
    {
        Assert.Equal(hex, Convert.ToHexStringLower(CommandCodec.Encode(command)));
        Assert.Equal(command, CommandCodec.Decode(Convert.FromHexString(hex)));
    }

    [Fact]
    public void Every_single_bit_flip_is_rejected()
    {
        var golden = Convert.FromHexString(BatchHex);
        for (var i = 0; i < golden.Length; i++)
        {
            var damaged = (byte[])golden.Clone();
            damaged[i] ^= 0x04;
            Assert.Throws<CommandFormatException>(() => CommandCodec.Decode(damaged));
        }
    }

    [Fact]
    public void A_truncated_command_is_rejected()
    {
        var golden = Convert.FromHexString(BatchHex);
        for (var length = 0; length < golden.Length; length += 7)
        {
            Assert.Throws<CommandFormatException>(() => CommandCodec.Decode(golden.AsSpan(0, length)));
        }
    }

    [Fact]
    public void Another_format_version_is_rejected_even_with_a_valid_crc()
    {
        var v2 = Convert.FromHexString(BatchHex);
        v2[0] = 2;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(v2.AsSpan(v2.Length - 4), System.IO.Hashing.Crc32.HashToUInt32(v2.AsSpan(0, v2.Length - 4)));
        var e = Assert.Throws<CommandFormatException>(() => CommandCodec.Decode(v2));
        Assert.Contains("version 2", e.Message, StringComparison.Ordinal);
    }
}
