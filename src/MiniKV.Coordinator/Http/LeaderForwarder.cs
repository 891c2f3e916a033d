using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Http.Features;

namespace MiniKV.Coordinator.Http;

/// <summary>How a forwarded request ended.</summary>
public enum ForwardResult
{
    /// <summary>The leader answered and its answer (status, headers, body) was passed to the client.</summary>
    Forwarded,

    /// <summary>The leader could not be reached, or failed before the request body was sent in full: 503 with
    /// Retry-After was answered. Nothing was applied.</summary>
    LeaderUnavailable,

    /// <summary>A write's request reached the leader in full but no answer came back: 504 <c>outcome_unknown</c> was answered.</summary>
    OutcomeUnknown,

    /// <summary>The request had already been forwarded once (the leader moved meanwhile): 503 was answered instead of a second hop.</summary>
    Loop,

    /// <summary>The client went away, or the leader's answer broke off after it had started: the connection was aborted.</summary>
    Broken,
}

/// <summary>
/// Passes a request to the leader coordinator's HTTP address and the answer back, streaming bodies both ways
/// (nothing is buffered: a request body flows to the leader as the client sends it, the leader's answer flows to
/// the client as it arrives). Hop-by-hop headers are dropped; <c>X-Forwarded-For</c>/<c>-Host</c>/<c>-Proto</c>
/// and <see cref="ForwardedByHeader"/> are added. Thread-safety: one instance serves every request concurrently;
/// dispose at shutdown.
/// </summary>
public sealed class LeaderForwarder : IDisposable
{
    /// <summary>Marks a forwarded request with the id of the coordinator that forwarded it; a coordinator that is not the
    /// leader either does not forward such a request again (see <see cref="ForwardResult.Loop"/>).</summary>
    public const string ForwardedByHeader = "X-MiniKV-Forwarded-By";

    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Expect", "Host",
    };

    private readonly HttpMessageInvoker _client;
    private readonly string _selfId;

    /// <param name="selfId">This coordinator's --id, sent in <see cref="ForwardedByHeader"/>.</param>
    /// <param name="connectTimeout">How long connecting to the leader may take before the answer is 503 (default 2 s).</param>
    public LeaderForwarder(string selfId, TimeSpan? connectTimeout = null)
    {
        _selfId = selfId;
        _client = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ConnectTimeout = connectTimeout ?? TimeSpan.FromSeconds(2),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
            EnableMultipleHttp2Connections = true,
        }, disposeHandler: true);
    }

    /// <summary>True when the request came from another coordinator (it carries <see cref="ForwardedByHeader"/>).</summary>
    public static bool WasForwarded(HttpRequest request) => request.Headers.ContainsKey(ForwardedByHeader);

    /// <summary>
    /// Forwards the current request to <paramref name="leaderHttp"/> (the leader's HTTP base URL) and writes the
    /// answer, or an error answer, to the response. Never throws for network or client problems.
    /// </summary>
    public async Task<ForwardResult> ForwardAsync(HttpContext context, Uri leaderHttp, CancellationToken cancellationToken = default)
    {
        var request = context.Request;
        if (WasForwarded(request))
        {
            await ApiError.NoLeader($"the request was forwarded by {request.Headers[ForwardedByHeader]} to a coordinator that is no longer the leader; retry").WriteAsync(context);
            return ForwardResult.Loop;
        }
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, context.RequestAborted);
        var cancel = linked.Token;
        var body = HasBody(request) ? new SentBodyStream(request.Body) : null;
        using var message = new HttpRequestMessage(new HttpMethod(request.Method), Target(context, leaderHttp))
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        };
        if (body != null)
        {
            message.Content = new StreamContent(body, 64 << 10);
            if (request.ContentLength is { } length)
            {
                message.Content.Headers.ContentLength = length;
            }
        }
        foreach (var (name, values) in request.Headers)
        {
            if (HopByHop.Contains(name) || name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                continue; // set on the content above, from the parsed value
            }
            if (!message.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values))
            {
                message.Content?.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            }
        }
        message.Headers.TryAddWithoutValidation(ForwardedByHeader, _selfId);
        message.Headers.TryAddWithoutValidation("X-Forwarded-For", context.Connection.RemoteIpAddress?.ToString());
        message.Headers.TryAddWithoutValidation("X-Forwarded-Host", request.Host.Value);
        message.Headers.TryAddWithoutValidation("X-Forwarded-Proto", request.Scheme);

        HttpResponseMessage response;
        try
        {
            response = await _client.SendAsync(message, cancel);
        }
        catch (Exception) when (context.RequestAborted.IsCancellationRequested || cancellationToken.IsCancellationRequested)
        {
            context.Abort();
            return ForwardResult.Broken;
        }
        catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException or SocketException)
        {
            var reads = HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) || HttpMethods.IsOptions(request.Method);
            // The leader cannot have applied a write whose body it never received in full (it commits only
            // after the last byte); once the whole request was out, silence means the outcome is unknown.
            var delivered = body == null ? !IsConnectFailure(e) : body.Completed;
            if (!reads && delivered)
            {
                await ApiError.OutcomeUnknown($"the request reached the leader {leaderHttp} but its answer did not come back ({e.Message}); a GET tells whether the write was applied").WriteAsync(context);
                return ForwardResult.OutcomeUnknown;
            }
            await ApiError.NoLeader($"the leader {leaderHttp} cannot be reached ({e.Message}); nothing was applied; retry").WriteAsync(context);
            return ForwardResult.LeaderUnavailable;
        }
        using (response)
        {
            var target = context.Response;
            target.StatusCode = (int)response.StatusCode;
            CopyHeaders(response.Headers, target.Headers);
            CopyHeaders(response.Content.Headers, target.Headers);
            if (response.Content.Headers.ContentLength is { } length)
            {
                target.ContentLength = length;
            }
            // Pass the leader's bytes on as they come: no response buffering, no compression.
            context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
            try
            {
                await using var stream = await response.Content.ReadAsStreamAsync(cancel);
                if (!HttpMethods.IsHead(request.Method))
                {
                    await stream.CopyToAsync(target.Body, 64 << 10, cancel);
                }
                await target.CompleteAsync();
                return ForwardResult.Forwarded;
            }
            catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException or ObjectDisposedException)
            {
                // The status line is out: cutting the connection is the only way to tell the client the body is incomplete.
                context.Abort();
                return ForwardResult.Broken;
            }
        }
    }

    private static bool HasBody(HttpRequest request) =>
        request.ContentLength is > 0 || request.Headers.TransferEncoding.Count > 0
        || (request.ContentLength == 0 && (HttpMethods.IsPut(request.Method) || HttpMethods.IsPost(request.Method)));

    private static bool IsConnectFailure(Exception e) =>
        e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError }
        || e.InnerException is SocketException;

    private static Uri Target(HttpContext context, Uri leader)
    {
        // The raw target keeps the client's exact escaping (a key's %2F must stay %2F).
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (string.IsNullOrEmpty(raw) || raw[0] != '/')
        {
            raw = context.Request.PathBase.ToUriComponent() + context.Request.Path.ToUriComponent() + context.Request.QueryString.ToUriComponent();
        }
        return new Uri(leader.GetLeftPart(UriPartial.Authority) + raw, UriKind.Absolute);
    }

    private static void CopyHeaders(System.Net.Http.Headers.HttpHeaders from, IHeaderDictionary to)
    {
        foreach (var (name, values) in from.NonValidated)
        {
            if (HopByHop.Contains(name) || name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            var list = new string[values.Count];
            var i = 0;
            foreach (var value in values)
            {
                list[i++] = value;
            }
            to[name] = list;
        }
    }

    public void Dispose() => _client.Dispose();

    /// <summary>The client's request body as the leader reads it; notes when it was read to its end.</summary>
    private sealed class SentBodyStream(Stream inner) : Stream
    {
        public bool Completed { get; private set; }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken);
            if (n == 0 && buffer.Length > 0)
            {
                Completed = true;
            }
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("the request body is read asynchronously");
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
