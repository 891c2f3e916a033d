using System.Globalization;

namespace MiniKV.Common;

/// <summary>
/// Byte sizes as users write them: plain bytes ("1048576") or with a binary suffix ("64KiB", "1MiB", "4GiB",
/// "1TiB"; "KB"/"MB"/"GB"/"K"/"M"/"G" are read as the same powers of 1024). Case-insensitive; spaces allowed
/// before the suffix; fractions allowed with a suffix ("1.5GiB"). Thread-safety: stateless.
/// </summary>
public static class Sizes
{
    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var s = text.Trim();
        var end = 0;
        while (end < s.Length && (char.IsAsciiDigit(s[end]) || s[end] == '.'))
        {
            end++;
        }
        if (end == 0)
        {
            return false;
        }
        var suffix = s[end..].Trim().ToUpperInvariant();
        long multiplier = suffix switch
        {
            "" or "B" => 1,
            "K" or "KB" or "KIB" => 1L << 10,
            "M" or "MB" or "MIB" => 1L << 20,
            "G" or "GB" or "GIB" => 1L << 30,
            "T" or "TB" or "TIB" => 1L << 40,
            _ => 0,
        };
        if (multiplier == 0 || !decimal.TryParse(s.AsSpan(0, end), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
        {
            return false;
        }
        var value = number * multiplier;
        if (value > long.MaxValue || value != decimal.Truncate(value))
        {
            return false;
        }
        bytes = (long)value;
        return true;
    }

    public static long Parse(string text) =>
        TryParse(text, out var bytes) ? bytes : throw new FormatException($"'{text}' is not a size; write bytes or a number with KiB, MiB, GiB or TiB");

    /// <summary>The shortest exact form: "4GiB", "1536KiB", "1000".</summary>
    public static string Format(long bytes)
    {
        string[] suffixes = ["TiB", "GiB", "MiB", "KiB"];
        for (var i = 0; i < suffixes.Length; i++)
        {
            var unit = 1L << (10 * (suffixes.Length - i));
            if (bytes != 0 && bytes % unit == 0)
            {
                return (bytes / unit).ToString(CultureInfo.InvariantCulture) + suffixes[i];
            }
        }
        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
