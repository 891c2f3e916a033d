using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using MiniKV.Common;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Volumes;

namespace MiniKV.Coordinator.Server;

/// <summary>
/// The public key API (SPEC.md): PUT/GET/HEAD/DELETE <c>/kv/{key}</c> and <c>GET /kv?prefix=&amp;start_after=&amp;limit=</c>.
/// A follower forwards every request to the leader, except reads: stale ones it answers from its state, linearizable
/// ones after a read barrier it passes through the leader (forwarded only when that fails).
/// </summary>
internal static class KvEndpoints
{
    /// <summary>On answers the leader produced (also when a follower forwarded them): the leader's public HTTP base URL.</summary>
    public const string LeaderHeader = "X-MiniKV-Leader";

    private const int DefaultLimit = 1000;
    private const int MaxLimit = 10000;

    /// <summary>How long a follower waits for a leader to be known before answering 503 (a few election timeouts).</summary>
    private static readonly TimeSpan LeaderWait = TimeSpan.FromSeconds(2);

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? _answerBuffer;

    [ThreadStatic]
    private static Utf8JsonWriter? _answerJson;

    public static void Map(WebApplication app, CoordinatorNode node, IRequestForwarder? forwarder)
    {
        app.MapMethods("/kv/{**key}", [HttpMethods.Put], c => TimedAsync(node, "put", c, () => PutAsync(node, forwarder, c)));
        // "/kv/{**key}" also matches "/kv" and "/kv/": those are the listing.
        app.MapMethods("/kv/{**key}", [HttpMethods.Get, HttpMethods.Head], c => IsListing(c)
            ? TimedAsync(node, "list", c, () => ListAsync(node, forwarder, c))
            : TimedAsync(node, "get", c, () => GetAsync(node, forwarder, c)));
        app.MapMethods("/kv/{**key}", [HttpMethods.Delete], c => TimedAsync(node, "delete", c, () => DeleteAsync(node, forwarder, c)));
    }

    private static bool IsListing(HttpContext context) => context.Request.Path.Value is "/kv" or "/kv/";

    private static async Task TimedAsync(CoordinatorNode node, string route, HttpContext context, Func<Task> handler)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            await handler();
        }
        finally
        {
            node.Metrics.Request(route, context.Response.StatusCode, System.Diagnostics.Stopwatch.GetElapsedTime(started));
        }
    }

    /// <summary>Sends the request to the leader when this node is not it. True when the request was handled here by forwarding or refusing.</summary>
    internal static async Task<bool> ForwardUnlessLeaderAsync(CoordinatorNode node, IRequestForwarder? forwarder, HttpContext context)
    {
        if (node.Consensus.Leader.IsLeader)
        {
            // Lets a client send its next requests here instead of through a follower's forwarding hop.
            context.Response.Headers[LeaderHeader] = node.AdvertisedHttp;
            return false;
        }
        var leader = node.LeaderHttp() ?? await WaitForLeaderAsync(node, context.RequestAborted);
        if (node.Consensus.Leader.IsLeader)
        {
            return false; // elected while waiting
        }
        if (leader == null)
        {
            await Problem.NoLeader("no leader is known right now (an election may be under way); retry shortly").WriteAsync(context);
            return true;
        }
        if (forwarder == null || context.Request.Headers.ContainsKey(IRequestForwarder.ForwardedByHeader))
        {
            await Problem.NoLeader($"this coordinator is not the leader; the leader is {node.Consensus.Leader.LeaderId} at {leader}").WriteAsync(context);
            return true;
        }
        await forwarder.ForwardAsync(context, leader, context.RequestAborted);
        return true;
    }

    /// <summary>
    /// Right after a leader dies (or just after /health/ready, when leadership can still move) no leader is known for
    /// an election's time; waiting that long here turns a 503 the client would have to retry into a short delay.
    /// Null when none is known within <see cref="LeaderWait"/> (then 503 with Retry-After).
    /// </summary>
    private static async Task<Uri?> WaitForLeaderAsync(CoordinatorNode node, CancellationToken cancellationToken)
    {
        var deadline = Environment.TickCount64 + (long)LeaderWait.TotalMilliseconds;
        while (Environment.TickCount64 < deadline && !cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(20, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return null;
            }
            if (node.Consensus.Leader.IsLeader)
            {
                return null;
            }
            if (node.LeaderHttp() is { } leader)
            {
                return leader;
            }
        }
        return null;
    }

    private static bool TryKey(HttpContext context, out byte[] key, out Problem? problem)
    {
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (string.IsNullOrEmpty(target) || target[0] != '/')
        {
            target = context.Request.PathBase.ToUriComponent() + context.Request.Path.ToUriComponent();
        }
        var query = target.IndexOf('?', StringComparison.Ordinal);
        var path = query >= 0 ? target.AsSpan(0, query) : target.AsSpan();
        problem = null;
        if (KeyRules.TryDecodePath(path.Length > 4 ? path[4..] : [], out key, out var error))
        {
            return true;
        }
        problem = Problem.BadKey(error + " (keys are 1 to 1024 bytes of UTF-8 without NUL, percent-encoded in the URL)");
        return false;
    }

    private static async Task PutAsync(CoordinatorNode node, IRequestForwarder? forwarder, HttpContext context)
    {
        if (!TryKey(context, out var key, out var bad))
        {
            await bad!.WriteAsync(context);
            return;
        }
        var request = context.Request;
        if (request.ContentLength > node.Options.MaxValueSize)
        {
            // Answered from the header, before reading any of the body (and before forwarding it anywhere).
            await Problem.TooLarge($"the value is {request.ContentLength} bytes, over the limit of {Sizes.Format(node.Options.MaxValueSize)} (--max-value-size)").WriteAsync(context);
            return;
        }
        if (await ForwardUnlessLeaderAsync(node, forwarder, context))
        {
            return;
        }
        var maxBody = context.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (maxBody is { IsReadOnly: false })
        {
            maxBody.MaxRequestBodySize = null; // the write path enforces --max-value-size while streaming
        }
        var put = new PutRequest(key, request.ContentLength, request.ContentType ?? "", request.Headers.IfMatch.ToString() is { Length: > 0 } m ? m : null,
            request.Headers.IfNoneMatch.ToString() is { Length: > 0 } n ? n : null);
        var result = await node.PutAsync(put, request.BodyReader, context.RequestAborted);
        if (result.Problem is { } problem)
        {
            await problem.WriteAsync(context);
            return;
        }
        var record = result.Record!;
        var response = context.Response;
        response.StatusCode = StatusCodes.Status201Created;
        response.Headers.ETag = "\"" + record.ETag + "\"";
        response.Headers.Location = "/kv/" + KeyRules.EncodePath(key);
        await WritePutAnswerAsync(response, key, record);
    }

    /// <summary>
    /// Writes a PUT's 201 body (key, version, size, etag, replicas) with its Content-Length. The JSON is built in this
    /// thread's reusable buffer and copied into the response pipe before anything awaits, so the buffer is free again
    /// when this returns: no per-PUT buffer, writer or array for the hottest answer.
    /// </summary>
    private static ValueTask<FlushResult> WritePutAnswerAsync(HttpResponse response, byte[] key, KeyRecord record)
    {
        var buffer = _answerBuffer ??= new ArrayBufferWriter<byte>(256);
        buffer.ResetWrittenCount();
        var json = _answerJson ??= new Utf8JsonWriter(buffer);
        json.Reset(buffer);
        json.WriteStartObject();
        json.WriteString("key", KeyRules.Display(key));
        json.WriteNumber("version", record.Version);
        json.WriteNumber("size", record.Size);
        json.WriteString("etag", record.ETag);
        json.WriteStartArray("replicas");
        foreach (var volume in record.Volumes)
        {
            json.WriteStringValue(volume);
        }
        json.WriteEndArray();
        json.WriteEndObject();
        json.Flush();
        response.ContentType = "application/json";
        response.ContentLength = buffer.WrittenCount;
        response.BodyWriter.Write(buffer.WrittenSpan);
        return response.BodyWriter.FlushAsync();
    }

    /// <summary>Writes a whole JSON body with its Content-Length, so Kestrel sends headers and body together rather than
    /// as chunks with a separate end-of-body write.</summary>
    private static Task WriteJsonAsync(HttpResponse response, byte[] body)
    {
        response.ContentType = "application/json";
        response.ContentLength = body.Length;
        return response.Body.WriteAsync(body).AsTask();
    }

    private static async Task DeleteAsync(CoordinatorNode node, IRequestForwarder? forwarder, HttpContext context)
    {
        if (!TryKey(context, out var key, out var bad))
        {
            await bad!.WriteAsync(context);
            return;
        }
        if (await ForwardUnlessLeaderAsync(node, forwarder, context))
        {
            return;
        }
        var headers = context.Request.Headers;
        var result = await node.DeleteAsync(key, headers.IfMatch.ToString() is { Length: > 0 } m ? m : null,
            headers.IfNoneMatch.ToString() is { Length: > 0 } n ? n : null, context.RequestAborted);
        if (result.Problem is { } problem)
        {
            await problem.WriteAsync(context);
            return;
        }
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    }

    private static bool Stale(HttpContext context) =>
        string.Equals(context.Request.Query["consistency"].ToString(), "stale", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Linearizable reads need a fresh read barrier; stale reads need nothing. A follower that knows the leader passes
    /// the barrier itself (it asks the leader for a read index and waits until it has applied up to it) and answers
    /// from its own state, which saves the forwarding hop; only when that fails is the read forwarded to the leader.
    /// </summary>
    private static async Task<bool> ReadGateAsync(CoordinatorNode node, IRequestForwarder? forwarder, HttpContext context)
    {
        var consistency = context.Request.Query["consistency"].ToString();
        if (consistency.Length > 0 && !consistency.Equals("stale", StringComparison.OrdinalIgnoreCase) && !consistency.Equals("linearizable", StringComparison.OrdinalIgnoreCase))
        {
            await Problem.BadParameter($"consistency '{consistency}' is not 'stale' or 'linearizable'").WriteAsync(context);
            return false;
        }
        if (Stale(context))
        {
            return true;
        }
        if (node.Consensus.Leader is { IsLeader: false, LeaderId: not null } && await node.ClientReadBarrierAsync(context.RequestAborted))
        {
            return true;
        }
        if (await ForwardUnlessLeaderAsync(node, forwarder, context))
        {
            return false;
        }
        if (!await node.ClientReadBarrierAsync(context.RequestAborted))
        {
            await Problem.NoLeader("this coordinator cannot confirm it still leads (no quorum); retry shortly").WriteAsync(context);
            return false;
        }
        return true;
    }

    private static async Task GetAsync(CoordinatorNode node, IRequestForwarder? forwarder, HttpContext context)
    {
        if (!TryKey(context, out var key, out var bad))
        {
            await bad!.WriteAsync(context);
            return;
        }
        if (!await ReadGateAsync(node, forwarder, context))
        {
            return;
        }
        var record = node.StateMachine.GetKey(key);
        var request = context.Request;
        var response = context.Response;
        if (record == null)
        {
            await Problem.NotFound($"no key '{KeyRules.Display(key)}'").WriteAsync(context);
            return;
        }
        var quoted = "\"" + record.ETag + "\"";
        var ifMatch = request.Headers.IfMatch.ToString();
        if (ifMatch.Length > 0 && !Conditions.Matches(ifMatch, quoted, weak: false))
        {
            await Problem.PreconditionFailed("If-Match does not match the key's current ETag").WriteAsync(context);
            return;
        }
        response.Headers.ETag = quoted;
        response.Headers.LastModified = record.Modified.ToString("R", CultureInfo.InvariantCulture);
        response.Headers.AcceptRanges = "bytes";
        response.Headers["X-MiniKV-Version"] = record.Version.ToString(CultureInfo.InvariantCulture);
        var ifNoneMatch = request.Headers.IfNoneMatch.ToString();
        if (ifNoneMatch.Length > 0 && Conditions.Matches(ifNoneMatch, quoted, weak: true))
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            return;
        }
        var replicas = node.ReadReplicas(record);
        if (string.Equals(request.Query["redirect"].ToString(), "true", StringComparison.OrdinalIgnoreCase))
        {
            if (replicas.Count == 0)
            {
                await Problem.NotEnoughVolumes("no volume holding this key is registered").WriteAsync(context);
                return;
            }
            response.StatusCode = StatusCodes.Status307TemporaryRedirect;
            response.Headers.Location = ReplicaReader.RedirectUrl(replicas[0].HttpAddress, record.Key, record.Version, record.Transaction);
            return;
        }
        long offset = 0, length = record.Size;
        var range = request.Headers.Range.ToString();
        if (range.Length > 0)
        {
            if (!ByteRanges.TryParse(range, record.Size, out offset, out length, out var satisfiable))
            {
                // An unparsable Range header is ignored (RFC 9110 §14.2): the whole value is sent.
                offset = 0;
                length = record.Size;
            }
            else if (!satisfiable)
            {
                response.Headers.ContentRange = $"bytes */{record.Size}";
                await new Problem(416, "range_not_satisfiable", $"the range lies outside the value of {record.Size} bytes").WriteAsync(context);
                return;
            }
            else
            {
                response.StatusCode = StatusCodes.Status206PartialContent;
                response.Headers.ContentRange = $"bytes {offset}-{offset + length - 1}/{record.Size}";
            }
        }
        response.ContentLength = length;
        response.ContentType = record.ContentType.Length > 0 ? record.ContentType : "application/octet-stream";
        if (HttpMethods.IsHead(request.Method) || length == 0)
        {
            return;
        }
        var (status, message) = await node.Volumes.ReadAsync(record, replicas, offset, length, response.BodyWriter, context.RequestAborted);
        switch (status)
        {
            case ReadStatus.Unavailable:
                await Problem.NotEnoughVolumes("no replica of this key could be read: " + message).WriteAsync(context);
                break;
            case ReadStatus.Broken:
                context.Abort(); // never pass off a short body as complete
                break;
        }
    }

    private static async Task ListAsync(CoordinatorNode node, IRequestForwarder? forwarder, HttpContext context)
    {
        var query = context.Request.Query;
        var limit = DefaultLimit;
        if (query["limit"].ToString() is { Length: > 0 } text
            && (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit < 1 || limit > MaxLimit))
        {
            await Problem.BadParameter($"limit '{text}' is not a number from 1 to {MaxLimit}").WriteAsync(context);
            return;
        }
        if (!KeyRules.TryEncode(query["prefix"].ToString(), out var prefix, out _) && query["prefix"].ToString().Length > 0)
        {
            await Problem.BadParameter("prefix is not a valid key prefix").WriteAsync(context);
            return;
        }
        if (!KeyRules.TryEncode(query["start_after"].ToString(), out var startAfter, out _) && query["start_after"].ToString().Length > 0)
        {
            await Problem.BadParameter("start_after is not a valid key").WriteAsync(context);
            return;
        }
        if (!await ReadGateAsync(node, forwarder, context))
        {
            return;
        }
        var page = node.StateMachine.List(prefix, startAfter, limit);
        var keys = new List<Dictionary<string, object>>(page.Keys.Count);
        foreach (var k in page.Keys)
        {
            keys.Add(new Dictionary<string, object>
            {
                ["key"] = KeyRules.Display(k.Key),
                ["size"] = k.Size,
                ["etag"] = k.ETag,
                ["version"] = k.Version,
                ["modified"] = k.Modified.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
            });
        }
        await WriteJsonAsync(context.Response, JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object?>
        {
            ["keys"] = keys,
            ["truncated"] = page.Truncated,
            ["next_start_after"] = page.Truncated ? KeyRules.Display(page.Keys[^1].Key) : null,
        }));
    }
}
