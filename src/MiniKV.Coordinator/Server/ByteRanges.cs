using System.Globalization;

namespace MiniKV.Coordinator.Server;

/// <summary>A single <c>Range: bytes=</c> range (RFC 9110 §14.1.2): <c>a-b</c>, <c>a-</c> or <c>-n</c>. Stateless.</summary>
public static class ByteRanges
{
    /// <summary>
    /// False when the header is not one byte range (then it is ignored). True with <paramref name="satisfiable"/>
    /// false when the range lies outside a value of <paramref name="size"/> bytes (416).
    /// </summary>
    public static bool TryParse(string header, long size, out long offset, out long length, out bool satisfiable)
    {
        offset = length = 0;
        satisfiable = false;
        if (!header.StartsWith("bytes=", StringComparison.OrdinalIgnoreCase) || header.Contains(',', StringComparison.Ordinal))
        {
            return false;
        }
        var spec = header.AsSpan(6).Trim();
        var dash = spec.IndexOf('-');
        if (dash < 0)
        {
            return false;
        }
        var first = spec[..dash].Trim();
        var last = spec[(dash + 1)..].Trim();
        if (first.IsEmpty)
        {
            if (!long.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out var suffix))
            {
                return false;
            }
            satisfiable = suffix > 0 && size > 0;
            length = Math.Min(suffix, size);
            offset = size - length;
            return true;
        }
        if (!long.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out offset))
        {
            return false;
        }
        var end = size - 1;
        if (!last.IsEmpty && (!long.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out end) || end < offset))
        {
            return false;
        }
        satisfiable = offset < size;
        end = Math.Min(end, size - 1);
        length = satisfiable ? end - offset + 1 : 0;
        return true;
    }
}
