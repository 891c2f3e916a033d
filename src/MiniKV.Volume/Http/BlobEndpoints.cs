using System.Buffers;
using System.Globalization;
using Microsoft.AspNetCore.Http.Features;
using MiniKV.Common;
using MiniKV.Storage;
using MiniKV.Volume.Errors;
using MiniKV.Volume.Values;

namespace MiniKV.Volume.Http;

/// <summary>
/// <c>GET/HEAD /blob/{key}</c>: a value straight from this volume (the target of the coordinators'
/// <c>?redirect=true</c>). Small values come from the engine's read cache; larger ones are read from the
/// segment file 1 MiB at a time straight into the response pipe, the record CRC checked before the last chunk leaves
/// (whole values) or before the first (ranges).
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
        if (CommittedWrite(context) is var (version, tx))
        {
            await node.CommitIfPreparedAsync(key, version, tx, cancel);
        }
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
            var whole = range.Start == 0 && range.Length == footer.ContentLength;
            if (whole ? await SendWholeAsync(context, node, key, sequence, range.Length) : await SendRangeAsync(context, node, key, sequence, range))
            {
                Count(node, range.Length);
                return;
            }
            if (attempt >= 3)
            {
                throw new VolumeException(VolumeError.Unavailable, $"key '{KeyRules.Display(key)}' kept changing during the read; retry");
            }
            context.Response.Headers.Clear(); // overwritten since the footer was read: start over
        }
    }

    /// <summary>
    /// A whole value in one checked pass, as gRPC Read does: the record CRC is computed while the bytes go out and
    /// confirmed before the last chunk is released, so a damaged copy never arrives complete. A value of one chunk is
    /// checked before anything is sent (a damaged one gets 500 corrupt_record); a larger one whose CRC fails at the end
    /// has its response cut short (the error handler aborts it). False when the key changed since its footer was read.
    /// </summary>
    private static async Task<bool> SendWholeAsync(HttpContext context, VolumeNode node, byte[] key, long sequence, long length)
    {
        var cancel = context.RequestAborted;
        var opened = await node.Store.OpenReadAsync(key, cancellationToken: cancel);
        if (opened.Status == StoreStatus.NotFound)
        {
            return false;
        }
        if (opened.Status != StoreStatus.Ok)
        {
            throw VolumeException.FromStatus(opened.Status, $"read of key '{KeyRules.Display(key)}'");
        }
        await using var stream = opened.Stream!;
        if (opened.Info.Sequence != sequence)
        {
            return false;
        }
        var writer = context.Response.BodyWriter;
        if (length <= CopyChunk)
        {
            // Kestrel starts the response (status and headers) as soon as its pipe memory is asked for, so a value that
            // is all one chunk is read and checked in a buffer of ours first: a damaged copy can still get a 500.
            var buffer = ArrayPool<byte>.Shared.Rent((int)length);
            try
            {
                await stream.ReadExactlyAsync(buffer.AsMemory(0, (int)length), cancel);
                await DrainFooterAsync(stream, cancel);
                await writer.WriteAsync(buffer.AsMemory(0, (int)length), cancel);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            return true;
        }
        for (long sent = 0; sent < length;)
        {
            var want = (int)Math.Min(CopyChunk, length - sent);
            var memory = writer.GetMemory(want)[..want];
            await stream.ReadExactlyAsync(memory, cancel);
            if (sent + want == length)
            {
                await DrainFooterAsync(stream, cancel); // throws CorruptionException before the last chunk leaves
            }
            writer.Advance(want);
            sent += want;
            var flushed = await writer.FlushAsync(cancel);
            if (flushed.IsCanceled || flushed.IsCompleted)
            {
                return true; // the client went away
            }
        }
        return true;
    }

    /// <summary>Reads the footer after the content, so the stream reaches its end and checks the record CRC.</summary>
    private static async Task DrainFooterAsync(Stream stream, CancellationToken cancel)
    {
        var rest = new byte[ValueFooter.Size];
        while (await stream.ReadAsync(rest, cancel) > 0)
        {
        }
    }

    /// <summary>
    /// A byte range: the engine checks the whole record first (GetFileRangeAsync), then the range is copied from the
    /// segment file under a lease. False when the key changed since its footer was read.
    /// </summary>
    private static async Task<bool> SendRangeAsync(HttpContext context, VolumeNode node, byte[] key, long sequence, ByteRange range)
    {
        var cancel = context.RequestAborted;
        var (status, lease) = await node.Store.GetFileRangeAsync(key, cancel);
        if (status == StoreStatus.NotFound)
        {
            return false;
        }
        if (status != StoreStatus.Ok)
        {
            throw VolumeException.FromStatus(status, $"key '{KeyRules.Display(key)}'");
        }
        using (lease)
        {
            if (lease!.Sequence != sequence)
            {
                return false;
            }
            await CopyAsync(lease, range, context.Response.BodyWriter, cancel);
        }
        return true;
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

    /// <summary>
    /// <c>?version=V&amp;tx=T</c> (T: the 16 bytes of the transaction id as 32 hex digits), which a coordinator's 307
    /// adds: the write that made version V committed, and a copy still prepared here is committed before the read
    /// (see <see cref="VolumeNode.CommitIfPreparedAsync"/>). Null when absent.
    /// </summary>
    private static (ulong Version, TxId Tx)? CommittedWrite(HttpContext context)
    {
        var query = context.Request.Query;
        var versionText = query["version"].ToString();
        var txText = query["tx"].ToString();
        if (versionText.Length == 0 && txText.Length == 0)
        {
            return null;
        }
        Span<byte> id = stackalloc byte[TxId.Size];
        if (!ulong.TryParse(versionText, NumberStyles.None, CultureInfo.InvariantCulture, out var version) || version == 0
            || txText.Length != 2 * TxId.Size || Convert.FromHexString(txText, id, out _, out var written) != OperationStatus.Done || written != TxId.Size)
        {
            throw new VolumeException(VolumeError.InvalidArgument,
                $"?version= and ?tx= go together: a version number above 0 and a transaction id of {2 * TxId.Size} hex digits (got version '{versionText}', tx '{txText}')");
        }
        return (version, TxId.Read(id));
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
