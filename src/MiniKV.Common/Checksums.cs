using System.Globalization;

namespace MiniKV.Common;

/// <summary>
/// The text form of a value checksum in the internal protocol and in ETags: the CRC32 (IEEE) of the bytes as
/// 8 lowercase hex digits of the 32-bit number ("cbf43926" for "123456789"). Thread-safety: stateless.
/// </summary>
public static class Checksums
{
    public static string Format(uint crc32) => crc32.ToString("x8", CultureInfo.InvariantCulture);

    /// <summary>Parses 8 hex digits (either case).</summary>
    public static bool TryParse(string? text, out uint crc32)
    {
        crc32 = 0;
        return text is { Length: 8 } && uint.TryParse(text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out crc32);
    }
}
