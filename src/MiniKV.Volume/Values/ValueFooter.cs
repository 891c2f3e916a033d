using System.Buffers.Binary;
using System.IO.Hashing;

namespace MiniKV.Volume.Values;

/// <summary>
/// The volume-level footer stored after every value's bytes: which cluster version the copy is, and the
/// content's own CRC32 (the ETag and the checksum the coordinators compare). The engine stores
/// <c>content ‖ footer</c> as one opaque value; reads, ranges and sendfile skip the footer, and Stat reads only it.
/// <code>
/// offset size  field
///  0     4     magic           0x4656_4B4D ("MKVF" in file order), little-endian u32
///  4     1     format version  1; a reader rejects any other value
///  5     3     reserved        zero in version 1; a reader rejects anything else
///  8     8     cluster version u64, > 0: the coordinators' version of the key this copy holds
/// 16     8     content length  i64, ≥ 0: bytes of the value before this footer
/// 24     4     content CRC32   CRC32 (IEEE) of the content bytes
/// 28     4     footer CRC32    CRC32 (IEEE) of bytes [0, 28) of this footer
/// </code>
/// All integers little-endian. The footer is a trailer, not a header, because a coordinator streaming a
/// client's PUT learns the value's CRC (and, for chunked uploads, its length) only at the end of the stream;
/// a trailer lets the volume write the value in one pass with bounded memory and still answer "version V,
/// checksum C" from 32 bytes. The footer CRC lets Stat trust these 32 bytes without reading the whole record.
/// Version rule: any change to this layout bumps <see cref="FormatVersion"/>; readers keep reading older versions.
/// </summary>
public readonly record struct ValueFooter(ulong Version, long ContentLength, uint ContentCrc)
{
    public const int Size = 32;
    public const uint Magic = 0x4656_4B4D;
    public const byte FormatVersion = 1;

    public void Write(Span<byte> destination)
    {
        destination = destination[..Size];
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Magic);
        destination[4] = FormatVersion;
        destination[5..8].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Version);
        BinaryPrimitives.WriteInt64LittleEndian(destination[16..], ContentLength);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[24..], ContentCrc);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[28..], Crc32.HashToUInt32(destination[..28]));
    }

    public byte[] ToArray()
    {
        var bytes = new byte[Size];
        Write(bytes);
        return bytes;
    }

    /// <summary>
    /// Parses a footer read from the last <see cref="Size"/> bytes of a stored value of <paramref name="storedLength"/>
    /// bytes. Null with the reason when any check fails (magic, version, reserved bytes, footer CRC, length).
    /// </summary>
    public static ValueFooter? TryRead(ReadOnlySpan<byte> source, long storedLength, out string? problem)
    {
        if (source.Length < Size || storedLength < Size)
        {
            problem = $"the stored value is {storedLength} bytes, too short to hold a {Size}-byte footer";
            return null;
        }
        source = source[..Size];
        if (BinaryPrimitives.ReadUInt32LittleEndian(source) != Magic)
        {
            problem = "the value footer has no magic";
            return null;
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(source[28..]) != Crc32.HashToUInt32(source[..28]))
        {
            problem = "the value footer fails its CRC";
            return null;
        }
        if (source[4] != FormatVersion || source[5] != 0 || source[6] != 0 || source[7] != 0)
        {
            problem = $"the value footer has format version {source[4]}, which this build does not read";
            return null;
        }
        var footer = new ValueFooter(
            BinaryPrimitives.ReadUInt64LittleEndian(source[8..]),
            BinaryPrimitives.ReadInt64LittleEndian(source[16..]),
            BinaryPrimitives.ReadUInt32LittleEndian(source[24..]));
        if (footer.ContentLength != storedLength - Size)
        {
            problem = $"the value footer says {footer.ContentLength} content bytes but {storedLength - Size} are stored";
            return null;
        }
        problem = null;
        return footer;
    }
}
