using System.Globalization;

namespace MiniKV.Coordinator.Http;

/// <summary>What a Range header asks of a value of known size.</summary>
public enum RangeKind
{
    /// <summary>No Range header, or one the server ignores (several ranges, another unit, bad syntax): send it all (200).</summary>
    None,

    /// <summary>One satisfiable byte range: send it (206 with Content-Range).</summary>
    Satisfiable,

    /// <summary>A well-formed range that lies outside the value: 416 with <c>Content-Range: bytes */size</c>.</summary>
    Unsatisfiable,
}

/// <summary>
/// A single <c>Range: bytes=</c> range (RFC 9110 §14) resolved against the value's size. Several ranges and syntax
/// the server does not understand are ignored (the whole value is served), as the RFC allows. Immutable.
/// </summary>
public readonly record struct ByteRange(long Start, long Length)
{
    public long End => Start + Length - 1;

    /// <summary>Content-Range of a 206: <c>bytes 0-99/1000</c>.</summary>
    public string ContentRange(long size) => string.Create(CultureInfo.InvariantCulture, $"bytes {Start}-{End}/{size}");

    /// <summary>Content-Range of a 416: <c>bytes */1000</c>.</summary>
    public static string Unsatisfied(long size) => "bytes */" + size.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// Parses <paramref name="header"/> against a value of <paramref name="size"/> bytes. <c>bytes=a-b</c> (b clamped to
    /// the end), <c>bytes=a-</c>, <c>bytes=-n</c> (the last n bytes). A start at or past the end, or a zero-length
    /// suffix, is unsatisfiable. With <paramref name="ifRange"/> set and not equal to <paramref name="etag"/>, the
    /// range is ignored (the client's copy is stale: it gets the whole value).
    /// </summary>
    public static RangeKind Parse(string? header, long size, out ByteRange range, string? ifRange = null, string? etag = null)
    {
        range = default;
        if (string.IsNullOrWhiteSpace(header) || (!string.IsNullOrEmpty(ifRange) && ifRange.Trim() != etag))
        {
            return RangeKind.None;
        }
        var text = header.AsSpan().Trim();
        if (!text.StartsWith("bytes=", StringComparison.OrdinalIgnoreCase) || text.Contains(','))
        {
            return RangeKind.None;
        }
        var spec = text[6..].Trim();
        var dash = spec.IndexOf('-');
        if (dash < 0)
        {
            return RangeKind.None;
        }
        var first = spec[..dash].Trim();
        var last = spec[(dash + 1)..].Trim();
        if (first.IsEmpty)
        {
            if (!long.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out var suffix))
            {
                return RangeKind.None;
            }
            if (suffix == 0 || size == 0)
            {
                return RangeKind.Unsatisfiable;
            }
            suffix = Math.Min(suffix, size);
            range = new ByteRange(size - suffix, suffix);
            return RangeKind.Satisfiable;
        }
        if (!long.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var start))
        {
            return RangeKind.None;
        }
        long end;
        if (last.IsEmpty)
        {
            end = long.MaxValue;
        }
        else if (!long.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out end) || end < start)
        {
            return RangeKind.None;
        }
        if (start >= size)
        {
            return RangeKind.Unsatisfiable;
        }
        end = Math.Min(end, size - 1);
        range = new ByteRange(start, end - start + 1);
        return RangeKind.Satisfiable;
    }
}
