using MiniKV.Volume.Values;

namespace MiniKV.Volume.Tests;

/// <summary>Freezes the value footer's byte layout against bytes written out by hand (CRCs from zlib.crc32).</summary>
public class ValueFooterGoldenTests
{
    // magic "MKVF", version 1, 3 zero bytes, version 0x0102030405060708 LE, length 5 LE, CRC32("hello") = 0x3610a686 LE,
    // footer CRC32 of the 28 bytes before it = 0xe86dfc2d LE.
    private static readonly byte[] Golden = Convert.FromHexString(
        "4d4b5646" + "01" + "000000" + "0807060504030201" + "0500000000000000" + "86a61036" + "2dfc6de8");

    [Fact]
    public void Layout_is_frozen()
    {
        Assert.Equal(32, ValueFooter.Size);
        Assert.Equal(0x4656_4B4Du, ValueFooter.Magic);
        Assert.Equal(1, ValueFooter.FormatVersion);
        var footer = new ValueFooter(0x0102030405060708, 5, System.IO.Hashing.Crc32.HashToUInt32("hello"u8));
        Assert.Equal(Golden, footer.ToArray());
        Assert.Equal(footer, ValueFooter.TryRead(Golden, 5 + 32, out var problem));
        Assert.Null(problem);
    }

    [Theory]
    [InlineData(0, "magic")]
    [InlineData(4, "CRC")]
    [InlineData(9, "CRC")]
    [InlineData(30, "CRC")]
    public void A_flipped_bit_is_rejected(int index, string expected)
    {
        var damaged = (byte[])Golden.Clone();
        damaged[index] ^= 0x10;
        Assert.Null(ValueFooter.TryRead(damaged, 37, out var problem));
        Assert.Contains(expected, problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_length_that_disagrees_with_the_stored_size_is_rejected()
    {
        Assert.Null(ValueFooter.TryRead(Golden, 36, out var problem));
        Assert.Contains("5 content bytes", problem, StringComparison.Ordinal);
        Assert.Null(ValueFooter.TryRead(Golden.AsSpan(0, 31), 37, out _));
    }

    [Fact]
    public void Another_format_version_is_rejected_even_with_a_valid_crc()
    {
        var v2 = (byte[])Golden.Clone();
        v2[4] = 2;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(v2.AsSpan(28), System.IO.Hashing.Crc32.HashToUInt32(v2.AsSpan(0, 28)));
        Assert.Null(ValueFooter.TryRead(v2, 37, out var problem));
        Assert.Contains("format version 2", problem, StringComparison.Ordinal);
    }
}
