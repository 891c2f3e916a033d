using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Coordinator.Server;

/// <summary>
/// If-Match / If-None-Match for writes (RFC 9110 §13: If-Match compares strongly, If-None-Match weakly, '*' matches
/// any current value). The leader evaluates them against the key's state under the key's lock and, when they hold,
/// pins them to that state (the key absent, or its exact current ETag) so the state machine re-checks them at the
/// commit point. Thread-safety: stateless.
/// </summary>
public static class Conditions
{
    /// <summary>Whether the request has a condition at all; without one, <see cref="TryPin"/> does not look at the key's state.</summary>
    public static bool Any(string? ifMatch, string? ifNoneMatch) => !string.IsNullOrWhiteSpace(ifMatch) || !string.IsNullOrWhiteSpace(ifNoneMatch);

    public static bool TryPin(string? ifMatch, string? ifNoneMatch, KeyRecord? current, out WriteCondition condition, out string etag)
    {
        condition = WriteCondition.None;
        etag = "";
        var hasMatch = !string.IsNullOrWhiteSpace(ifMatch);
        var hasNoneMatch = !string.IsNullOrWhiteSpace(ifNoneMatch);
        if (!hasMatch && !hasNoneMatch)
        {
            return true;
        }
        var quoted = current == null ? null : "\"" + current.ETag + "\"";
        if (hasMatch && !Matches(ifMatch!, quoted, weak: false))
        {
            return false;
        }
        if (!hasMatch && hasNoneMatch && Matches(ifNoneMatch!, quoted, weak: true))
        {
            return false;
        }
        if (current == null)
        {
            condition = WriteCondition.IfNoneMatchAny;
        }
        else
        {
            condition = WriteCondition.IfMatch;
            etag = current.ETag;
        }
        return true;
    }

    /// <summary>True when a header's list ('*' or comma-separated quoted tags) matches the quoted current ETag.</summary>
    public static bool Matches(string header, string? currentQuoted, bool weak)
    {
        if (currentQuoted == null)
        {
            return false;
        }
        foreach (var part in header.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == "*")
            {
                return true;
            }
            var isWeak = part.StartsWith("W/", StringComparison.Ordinal);
            if (isWeak && !weak)
            {
                continue;
            }
            if ((isWeak ? part[2..] : part) == currentQuoted)
            {
                return true;
            }
        }
        return false;
    }
}
