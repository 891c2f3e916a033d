using System.Globalization;
using Microsoft.AspNetCore.Http.Features;
using MiniKV.Common;
using MiniKV.Storage;
using MiniKV.Volume.Errors;
using MiniKV.Volume.Values;

namespace MiniKV.Volume.Http;

/// <summary>
/// <c>GET/HEAD /blob/{key}</c>: a value straight from this volume (the target of the coordinators'
/// <c>?redirect=true</c>). Small values come from the engine's read cache; large ones are copied from
/// the segment file in 1 MiB reads under a lease, after the engine checked the record CRC.
/// </summary>
internal static class BlobEndpoints
{
    private const string Prefix = "/blob/";

    /// <summary>Values up to this size are served from memory (and the read cache) rather than from the file.</summary>
    private const int InMemoryLimit = 64 << 10;

    /// <summary>Bytes per read and flush when sending from the segment file.</summary>
    private const int CopyChunk = 1 << 20;

    public static void Map(IEndpointRouteBuilder routes, VolumeNode node) =>
        routes.Map(Prefix + "{**key}", context => ServeAsync(context, node));

    private static async Task ServeAsync(HttpContext context, VolumeNode node)
    {
        if (!HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method))
        {
            context.Response.Headers.Allow = "GET, HEAD";
            throw new VolumeException(VolumeError.MethodNotAllowed,
                $"{context.Request.Method} is not allowed on /blob: a volume serves reads only; write through a coordinator (PUT /kv/{{key}})");
        }
        var key = KeyFromTarget(context);
        var head = HttpMethods.IsHead(context.Request.Method);
        var cancel = context.RequestAborted;
        if (node.Store.Lookup(key, out var info) != StoreStatus.Ok)
        {
            throw VolumeNode.NotFound(key);
        }
        if (!head && info.Length <= InMemoryLimit + ValueFooter.Size)
        {
            var read = node.Store.Read(key);
            if (read.Status != StoreStatus.Ok)
            {
                throw read.Status == StoreStatus.NotFound ? VolumeNode.NotFound(key) : VolumeException.FromStatus(read.Status, $"key '{KeyRules.Display(key)}'");
            }
            var stored = read.Value;
            var footer = node.ParseFooter(key, stored.Span[^ValueFooter.Size..], stored.Length);
            if (Prepare(context, footer) is { } range)
            {
                await context.Response.Body.WriteAsync(stored.Slice((int)range.Start, (int)range.Length), cancel);
                Count(node, range.Length);
            }
            return;
        }
        for (var attempt = 0; ; attempt++)
        {
            var (footer, sequence) = await node.ReadFooterAsync(key, cancel);
            if (Prepare(context, footer) is not { } range || head)
            {
                return;
            }
            var (status, lease) = await node.Store.GetFileRangeAsync(key, cancel);
            if (status != StoreStatus.Ok)
            {
                throw status == StoreStatus.NotFound ? VolumeNode.NotFound(key) : VolumeException.FromStatus(status, $"key '{KeyRules.Display(key)}'");
            }
            using (lease)
            {
                if (lease!.Sequence != sequence)
                {
                    if (attempt < 3)
                    {
                        context.Response.Headers.Clear();
                        continue; // overwritten since the footer was read
                    }
                    throw new VolumeException(VolumeError.Unavailable, $"key '{KeyRules.Display(key)}' kept changing during the read; retry");
                }
                await CopyAsync(lease, range, context.Response.BodyWriter, cancel);
                Count(node, range.Length);
            }
            return;
        }
    }

    /// <summary>
    /// Sends a checked record's bytes with large positional reads straight into the response pipe's memory. Kestrel's
    /// SendFileAsync has no zero-copy path without a native sendfile transport and copies in small steps: on this box it
    /// moved a 256 MiB page-cached file at about a third of the rate of 1 MiB reads (docs/benchmarks.md, "Volume server"). The pipe rents chunks larger
    /// than its 4 KiB blocks from the shared ArrayPool, so the loop allocates nothing per chunk.
    /// </summary>
    private static async Task CopyAsync(FileRangeLease lease, ByteRange range, System.IO.Pipelines.PipeWriter writer, CancellationToken cancel)
    {
        var end = range.Start + range.Length;
        for (var position = range.Start; position < end;)
        {
            var want = (int)Math.Min(CopyChunk, end - position);
            var memory = writer.GetMemory(want)[..want];
            var read = await lease.ReadAsync(position, memory, cancel);
            if (read < want)
            {
                // The record was checked in full a moment ago and the lease keeps its file, so this is a damaged
                // disk or file system: never pass off a short body as complete.
                throw new IOException($"the segment file {lease.Path} ended {end - position - read} bytes before the value's end");
            }
            writer.Advance(read);
            position += read;
            var flushed = await writer.FlushAsync(cancel);
            if (flushed.IsCanceled || flushed.IsCompleted)
            {
                return; // the client went away
            }
        }
    }

    /// <summary>
    /// Sets status and headers for the value described by <paramref name="footer"/>; answers 304 / 416 itself.
    /// Returns the byte range to send, or null when no body follows.
    /// </summary>
    private static ByteRange? Prepare(HttpContext context, ValueFooter footer)
    {
        var request = context.Request;
        var response = context.Response;
        var etag = "\"" + Checksums.Format(footer.ContentCrc) + "\"";
        var size = footer.ContentLength;
        response.Headers.ETag = etag;
        response.Headers.AcceptRanges = "bytes";
        response.Headers["X-MiniKV-Version"] = footer.Version.ToString(CultureInfo.InvariantCulture);
        response.ContentType = "application/octet-stream";

        if (MatchesAny(request.Headers.IfNoneMatch.ToString(), etag))
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            return null;
        }
        var rangeHeader = request.Headers.Range.ToString();
        var ifRange = request.Headers.IfRange.ToString();
        if (ifRange.Length > 0 && ifRange != etag)
        {
            rangeHeader = ""; // the client's copy is stale: send the whole value
        }
        switch (ByteRange.Parse(rangeHeader, size, out var range))
        {
            case ByteRange.Kind.Unsatisfiable:
                response.Headers.ContentRange = "bytes */" + size.ToString(CultureInfo.InvariantCulture);
                throw new VolumeException(VolumeError.RangeNotSatisfiable, $"the range '{rangeHeader}' lies outside the value of {size} bytes");
            case ByteRange.Kind.Satisfiable:
                response.StatusCode = StatusCodes.Status206PartialContent;
                response.Headers.ContentRange = string.Create(CultureInfo.InvariantCulture, $"bytes {range.Start}-{range.Start + range.Length - 1}/{size}");
                break;
            default:
                response.StatusCode = StatusCodes.Status200OK;
                range = new ByteRange(0, size);
                break;
        }
        response.ContentLength = range.Length;
        return range;
    }

    private static bool MatchesAny(string ifNoneMatch, string etag)
    {
        if (ifNoneMatch.Length == 0)
        {
            return false;
        }
        foreach (var part in ifNoneMatch.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == "*" || part == etag || (part.StartsWith("W/", StringComparison.Ordinal) && part[2..] == etag))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The key from the raw request target, so that %2F and '/' both survive and decode exactly once.</summary>
    internal static byte[] KeyFromTarget(HttpContext context)
    {
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (string.IsNullOrEmpty(target) || target[0] != '/')
        {
            target = context.Request.PathBase + context.Request.Path; // absolute-form targets: fall back to the decoded path
        }
        var query = target.IndexOf('?', StringComparison.Ordinal);
        var path = query >= 0 ? target.AsSpan(0, query) : target.AsSpan();
        if (!path.StartsWith(Prefix, StringComparison.Ordinal))
        {
            throw new VolumeException(VolumeError.InvalidKey, "the path must be /blob/{percent-encoded key}");
        }
        return KeyRules.TryDecodePath(path[Prefix.Length..], out var key, out var error)
            ? key
            : throw new VolumeException(VolumeError.InvalidKey, error!);
    }

    private static void Count(VolumeNode node, long bytes) =>
        node.Metrics.Increment("minikv_volume_http_sent_bytes_total", "Value bytes sent by GET /blob.", by: bytes);
}
