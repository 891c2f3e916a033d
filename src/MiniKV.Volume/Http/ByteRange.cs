using System.Globalization;

namespace MiniKV.Volume.Http;

/// <summary>
/// A single-range <c>Range: bytes=</c> header (RFC 9110 §14) against a value of known size. Multiple ranges
/// and syntax the server does not understand are ignored (the whole value is served), as the RFC allows.
/// </summary>
internal readonly record struct ByteRange(long Start, long Length)
{
    public enum Kind
    {
        None,
        Satisfiable,
        Unsatisfiable,
    }

    public static Kind Parse(string? header, long size, out ByteRange range)
    {
        range = default;
        if (string.IsNullOrWhiteSpace(header))
        {
            return Kind.None;
        }
        var text = header.Trim();
        if (!text.StartsWith("bytes=", StringComparison.OrdinalIgnoreCase) || text.Contains(',', StringComparison.Ordinal))
        {
            return Kind.None;
        }
        var spec = text.AsSpan(6).Trim();
        var dash = spec.IndexOf('-');
        if (dash < 0)
        {
            return Kind.None;
        }
        var first = spec[..dash].Trim();
        var last = spec[(dash + 1)..].Trim();
        if (first.IsEmpty)
        {
            // bytes=-N: the last N bytes
            if (!long.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out var suffix))
            {
                return Kind.None;
            }
            if (suffix == 0 || size == 0)
            {
                return Kind.Unsatisfiable;
            }
            suffix = Math.Min(suffix, size);
            range = new ByteRange(size - suffix, suffix);
            return Kind.Satisfiable;
        }
        if (!long.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var start))
        {
            return Kind.None;
        }
        long end;
        if (last.IsEmpty)
        {
            end = size - 1;
        }
        else if (!long.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out end) || end < start)
        {
            return Kind.None;
        }
        if (start >= size)
        {
            return Kind.Unsatisfiable;
        }
        end = Math.Min(end, size - 1);
        range = new ByteRange(start, end - start + 1);
        return Kind.Satisfiable;
    }
}
