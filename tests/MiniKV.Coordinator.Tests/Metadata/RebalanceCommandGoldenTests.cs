using System.Text;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Coordinator.Tests.Metadata;

/// <summary>
/// Freezes the layouts of the rebalance command kinds (10-13) against bytes computed independently by python3:
/// env(kind, payload) = bytes([1, kind]) + pack('&lt;I', len(payload)) + payload, then pack('&lt;I', zlib.crc32(all of it));
/// str(x) = pack('&lt;H', len(utf8)) + utf8.
/// </summary>
public class RebalanceCommandGoldenTests
{
    public static TheoryData<string, MetadataCommand> Golden => new()
    {
        // env(10, str('run-1') + pack('<q', 1700000000002) + pack('<H', 2) + pack('<H', 7) + [2] + str('v1') + str('v4')
        //         + pack('<H', 255) + [1] + str('v2'))
        {
            "010a23000000050072756e2d310268e5cf8b01000002000700020200763102007634ff0001020076324c282277",
            new BeginRebalanceCommand("run-1", 1700000000002, [new ShardAssignment(7, ["v1", "v4"]), new ShardAssignment(255, ["v2"])])
        },
        // env(11, str('run-1') + pack('<q', 1700000000003))
        { "010b0f000000050072756e2d310368e5cf8b0100009b803e5b", new EndRebalanceCommand("run-1", 1700000000003) },
        // env(12, pack('<H', 2) + str('k/é') + pack('<Q', 7) + [0] + [2] + str('v1') + str('v4')
        //         + str('x') + pack('<Q', 9) + [1] + [1] + str('v2'))
        {
            "010c2b000000020004006b2fc3a90700000000000000000202007631020076340100780900000000000000010102007632b15dd9e9",
            new RelocateKeysCommand([new KeyRelocation(Encoding.UTF8.GetBytes("k/é"), 7, ["v1", "v4"], false), new KeyRelocation("x"u8.ToArray(), 9, ["v2"], true)])
        },
        // env(13, str('vol-4') + pack('<q', 1700000000004))
        { "010d0f0000000500766f6c2d340468e5cf8b010000d287b5e1", new RemoveVolumeCommand("vol-4", 1700000000004) },
    };

    [Theory]
    [MemberData(nameof(Golden))]
    public void Encoding_matches_the_independently_computed_bytes(string hex, MetadataCommand command)
    {
        Assert.Equal(hex, Convert.ToHexStringLower(CommandCodec.Encode(command)));
        Assert.Equal(command, CommandCodec.Decode(Convert.FromHexString(hex)));
    }

    [Fact]
    public void A_shard_number_out_of_range_is_rejected()
    {
        var bytes = CommandCodec.Encode(new BeginRebalanceCommand("r", 1, [new ShardAssignment(256, ["v"])]));
        var e = Assert.Throws<CommandFormatException>(() => CommandCodec.Decode(bytes));
        Assert.Contains("shard 256", e.Message, StringComparison.Ordinal);
    }
}
