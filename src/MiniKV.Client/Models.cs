using System.Text.Json;
using System.Text.Json.Serialization;

namespace MiniKV.Client;

/// <summary>The answer to a PUT (SPEC: <c>201 {"key","version","size","etag","replicas"}</c>). Immutable.</summary>
public sealed record PutResult(
    [property: JsonPropertyName("key")] string Key,
    [property: JsonPropertyName("version")] long Version,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("etag")] string ETag,
    [property: JsonPropertyName("replicas")] IReadOnlyList<string> Replicas);

/// <summary>Conditions and metadata of a PUT.</summary>
public sealed record PutOptions
{
    /// <summary>Stored with the value and answered on GET; null sends none (the coordinator's default).</summary>
    public string? ContentType { get; init; }

    /// <summary>Write only if the current ETag is this one (<c>If-Match</c>); 412 otherwise. Quotes are added when missing.</summary>
    public string? IfMatch { get; init; }

    /// <summary>Write only if the key does not exist (<c>If-None-Match: *</c>); 412 otherwise.</summary>
    public bool IfNoneMatchAny { get; init; }

    /// <summary>The body's length when the stream cannot tell (e.g. a pipe whose size is known elsewhere); else chunked.</summary>
    public long? ContentLength { get; init; }
}

/// <summary>How a GET or HEAD reads.</summary>
public sealed record GetOptions
{
    /// <summary>First byte of a range (<c>Range: bytes=From-To</c>); null reads from the start.</summary>
    public long? RangeFrom { get; init; }

    /// <summary>Last byte (inclusive) of a range; null reads to the end.</summary>
    public long? RangeTo { get; init; }

    /// <summary>Answer 304 (<see cref="ObjectInfo.NotModified"/>) when the value still has this ETag.</summary>
    public string? IfNoneMatch { get; init; }

    /// <summary><c>?consistency=stale</c>: any coordinator may answer from its local state.</summary>
    public bool Stale { get; init; }

    /// <summary>Called once with the answer's headers before the body is copied (e.g. to size a progress bar).</summary>
    public Action<ObjectInfo>? HeadersReceived { get; init; }
}

/// <summary>What a GET or HEAD said about a value (its headers). Immutable.</summary>
public sealed record ObjectInfo
{
    /// <summary>200, 206 (a range) or 304 (not modified).</summary>
    public int Status { get; init; }

    /// <summary>Bytes in this answer's body (the range's length for 206); -1 when the coordinator did not say.</summary>
    public long ContentLength { get; init; }

    public string? ETag { get; init; }

    public string? ContentType { get; init; }

    public DateTimeOffset? LastModified { get; init; }

    /// <summary>For 206: the whole value's size from <c>Content-Range</c>.</summary>
    public long? TotalSize { get; init; }

    /// <summary>Bytes written to the destination (GET only).</summary>
    public long BytesWritten { get; init; }

    public bool NotModified => Status == 304;
}

/// <summary>One key of a list page. Immutable.</summary>
public sealed record ListEntry(
    [property: JsonPropertyName("key")] string Key,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("etag")] string? ETag,
    [property: JsonPropertyName("version")] long Version,
    [property: JsonPropertyName("modified")] DateTimeOffset? Modified);

/// <summary>One page of <c>GET /kv?prefix=&amp;start_after=&amp;limit=</c>. Immutable.</summary>
public sealed record ListPage(
    [property: JsonPropertyName("keys")] IReadOnlyList<ListEntry> Keys,
    [property: JsonPropertyName("truncated")] bool Truncated,
    [property: JsonPropertyName("next_start_after")] string? NextStartAfter);

/// <summary>The admin jobs of SPEC's <c>POST /admin/{kind}</c>.</summary>
public enum JobKind
{
    Verify,
    Repair,
    Rebalance,
    Compact,

    /// <summary>Move every key off one volume (<c>POST /admin/volumes/{id}/drain</c>); set <see cref="JobRequest.VolumeId"/>.</summary>
    Drain,
}

/// <summary>A job to start; only the parameters of its kind are sent.</summary>
public sealed record JobRequest(JobKind Kind)
{
    /// <summary>verify: read every replica and check its checksum.</summary>
    public bool Deep { get; init; }

    /// <summary>repair: the replica count to restore; null uses the cluster's R.</summary>
    public int? Replicas { get; init; }

    /// <summary>repair and rebalance: plan only.</summary>
    public bool DryRun { get; init; }

    /// <summary>compact: one shard's keys only; null compacts all volumes.</summary>
    public int? Shard { get; init; }

    /// <summary>drain: the volume's id.</summary>
    public string? VolumeId { get; init; }

    internal string Path => Kind switch
    {
        JobKind.Verify => "admin/verify" + (Deep ? "?deep=true" : ""),
        JobKind.Repair => "admin/repair?dry_run=" + (DryRun ? "true" : "false") + (Replicas is { } r ? "&replicas=" + r : ""),
        JobKind.Rebalance => "admin/rebalance?dry_run=" + (DryRun ? "true" : "false"),
        JobKind.Compact => "admin/compact" + (Shard is { } s ? "?shard=" + s : ""),
        JobKind.Drain => "admin/volumes/" + Uri.EscapeDataString(VolumeId ?? throw new InvalidOperationException("a drain needs VolumeId")) + "/drain",
        _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
    };
}

/// <summary><c>GET /admin/jobs/{id}</c>: <c>{"id","kind","state","progress":{"done","total"},"result"}</c>. Immutable.</summary>
public sealed record JobStatus(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("kind")] string? Kind,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("progress")] JobProgress? Progress,
    [property: JsonPropertyName("result")] JsonElement? Result)
{
    public bool IsFinished => State is "done" or "failed";

    public bool Failed => State == "failed";
}

/// <summary>A job's progress counters.</summary>
public sealed record JobProgress(
    [property: JsonPropertyName("done")] long Done,
    [property: JsonPropertyName("total")] long Total);

/// <summary>
/// <c>GET /admin/status</c>. The well-known fields of SPEC are typed; <see cref="Raw"/> keeps the whole answer
/// for fields a newer coordinator adds. Immutable.
/// </summary>
public sealed record ClusterStatus(string? Leader, long Term, int? Replicas, long? Keys, JsonElement Raw);
