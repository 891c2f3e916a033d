using MiniKV.Common;

namespace MiniKV.Coordinator.Http;

/// <summary>
/// The ETag of a value: strong and content-derived, the CRC32 (IEEE) of its bytes as 8 lowercase hex digits,
/// quoted (<c>"cbf43926"</c> for "123456789"). Equal bytes give equal ETags, and it is the same ETag a volume's
/// <c>/blob</c> answers, so a client redirected there sees no difference. (Different values may share a CRC32
/// with a chance of 2^-32; a conditional PUT guards against lost updates between writers, where that risk is
/// acceptable; the version number is the exact identity.) Thread-safety: stateless.
/// </summary>
public static class ETags
{
    /// <summary>The quoted header form: <c>"cbf43926"</c>.</summary>
    public static string Format(uint crc32) => "\"" + Checksums.Format(crc32) + "\"";

    /// <summary>The quoted header form from a protocol checksum (8 hex digits).</summary>
    public static string FromChecksum(string checksum) => "\"" + checksum + "\"";

    /// <summary>The CRC32 inside a quoted ETag (a weak <c>W/</c> prefix is allowed); false when it is not one of ours.</summary>
    public static bool TryParse(string? etag, out uint crc32)
    {
        crc32 = 0;
        if (etag is null)
        {
            return false;
        }
        var text = etag.AsSpan().Trim();
        if (text.StartsWith("W/", StringComparison.Ordinal))
        {
            text = text[2..];
        }
        return text.Length == 10 && text[0] == '"' && text[^1] == '"' && Checksums.TryParse(text[1..^1].ToString(), out crc32);
    }
}
