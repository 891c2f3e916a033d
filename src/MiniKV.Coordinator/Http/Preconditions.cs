namespace MiniKV.Coordinator.Http;

/// <summary>What conditional headers decide.</summary>
public enum PreconditionResult
{
    /// <summary>No condition, or every condition holds: go on.</summary>
    Proceed,

    /// <summary>A write's condition failed: 412, nothing changes.</summary>
    Failed,

    /// <summary>A read's If-None-Match matched: 304 with the ETag, no body.</summary>
    NotModified,
}

/// <summary>
/// If-Match and If-None-Match (RFC 9110 §13) against a key's current ETag (null when the key does not exist).
/// If-Match compares strongly (a weak tag never matches), If-None-Match weakly; <c>*</c> matches any current
/// value. For writes these must be evaluated at the commit point against the state the write replaces.
/// Thread-safety: stateless.
/// </summary>
public static class Preconditions
{
    /// <summary>For PUT and DELETE: If-Match first (it wins when both are sent), then If-None-Match.</summary>
    public static PreconditionResult EvaluateWrite(string? ifMatch, string? ifNoneMatch, string? currentEtag)
    {
        if (!string.IsNullOrWhiteSpace(ifMatch))
        {
            return Matches(ifMatch, currentEtag, weak: false) ? PreconditionResult.Proceed : PreconditionResult.Failed;
        }
        if (!string.IsNullOrWhiteSpace(ifNoneMatch))
        {
            return Matches(ifNoneMatch, currentEtag, weak: true) ? PreconditionResult.Failed : PreconditionResult.Proceed;
        }
        return PreconditionResult.Proceed;
    }

    /// <summary>
    /// For GET and HEAD: If-None-Match matching the current ETag gives 304. (If-Match on a read is honoured too: a
    /// mismatch is 412.)
    /// </summary>
    public static PreconditionResult EvaluateRead(string? ifMatch, string? ifNoneMatch, string? currentEtag)
    {
        if (!string.IsNullOrWhiteSpace(ifMatch) && !Matches(ifMatch, currentEtag, weak: false))
        {
            return PreconditionResult.Failed;
        }
        if (!string.IsNullOrWhiteSpace(ifNoneMatch) && Matches(ifNoneMatch, currentEtag, weak: true))
        {
            return PreconditionResult.NotModified;
        }
        return PreconditionResult.Proceed;
    }

    /// <summary>True when a header's list (<c>*</c> or comma-separated quoted tags) matches the current ETag.</summary>
    public static bool Matches(string header, string? currentEtag, bool weak)
    {
        if (currentEtag is null)
        {
            return false;
        }
        var current = weak ? StripWeak(currentEtag) : currentEtag;
        foreach (var part in header.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == "*")
            {
                return true;
            }
            if (weak ? StripWeak(part) == current : part == current && !part.StartsWith("W/", StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    private static string StripWeak(string tag) => tag.StartsWith("W/", StringComparison.Ordinal) ? tag[2..] : tag;
}
