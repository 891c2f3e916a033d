using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text.Json;
using MiniKV.Common;

namespace MiniKV.Client;

/// <summary>
/// A client of minikv's public HTTP API (SPEC "Public HTTP API") over one pooled <see cref="HttpClient"/>.
/// Bodies stream in both directions; nothing buffers a whole value.
/// <para>
/// Failover: each call starts at the coordinator that last answered (or at the leader that answer named in
/// <see cref="LeaderHeader"/>, when it is one of the URLs given) and moves to the next URL when a coordinator
/// cannot be reached or answers 503. A write (PUT, DELETE, admin POST) moves on only when it is known not to have
/// been applied — the connection was never made, or the coordinator answered an error status other than 504
/// (SPEC: those mean "not applied") — and, for a PUT, only when its body can be sent again (nothing of it was read
/// yet, or the stream can seek back). A connection that breaks after a write was sent gives
/// <see cref="MiniKVError.ClientOutcomeUnknown"/>, never a silent retry.
/// </para>
/// <para>
/// Thread-safety: all members are safe to call concurrently from any number of threads; one instance is meant to be
/// shared for the life of the program (it owns the connection pool). Streams passed to a call belong to that call
/// until it completes.
/// </para>
/// </summary>
public sealed partial class MiniKVClient : IDisposable
{
    private const int CopyBufferSize = 128 * 1024;
    private const int MaxErrorBodyBytes = 64 * 1024;

    private static readonly UriCreationOptions VerbatimPath = new() { DangerousDisablePathAndQueryCanonicalization = true };

    private readonly HttpClient _http;
    /// <summary>The response header in which a coordinator names the leader's public HTTP base URL.</summary>
    public const string LeaderHeader = "X-MiniKV-Leader";

    private readonly string[] _bases;
    private readonly Uri[] _baseUris;
    private readonly TimeSpan _requestTimeout;
    private int _preferred;

    public MiniKVClient(MiniKVClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Coordinators.Count == 0)
        {
            throw new ArgumentException("at least one coordinator URL is needed", nameof(options));
        }
        _bases = new string[options.Coordinators.Count];
        _baseUris = new Uri[_bases.Length];
        for (var i = 0; i < _bases.Length; i++)
        {
            _bases[i] = options.Coordinators[i].GetLeftPart(UriPartial.Path).TrimEnd('/');
            _baseUris[i] = new Uri(_bases[i] + "/");
        }
        _requestTimeout = options.RequestTimeout;
        var handler = options.Handler ?? new SocketsHttpHandler
        {
            ConnectTimeout = options.ConnectTimeout,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
            PooledConnectionLifetime = TimeSpan.FromMinutes(10),
            MaxConnectionsPerServer = options.MaxConnectionsPerServer,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseProxy = false,
            UseCookies = false,
            Expect100ContinueTimeout = TimeSpan.FromSeconds(1),
            EnableMultipleHttp2Connections = true,
        };
        _http = new HttpClient(handler, disposeHandler: true)
        {
            Timeout = Timeout.InfiniteTimeSpan,
            DefaultRequestVersion = options.Http2 ? HttpVersion.Version20 : HttpVersion.Version11,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact, // cleartext HTTP/2 has no negotiation to fall back by
        };
    }

    /// <summary>A client of the given coordinators with default settings.</summary>
    public MiniKVClient(params Uri[] coordinators)
        : this(new MiniKVClientOptions { Coordinators = coordinators })
    {
    }

    /// <summary>The coordinator URLs in failover order.</summary>
    public IReadOnlyList<string> Coordinators => _bases;

    /// <summary>
    /// <c>PUT /kv/{key}</c>, streaming <paramref name="body"/> from its current position to its end. Content-Length is
    /// sent when known (<see cref="PutOptions.ContentLength"/> or a seekable stream), else the body is chunked.
    /// <paramref name="progress"/> gets the count of body bytes read so far (on the sending thread).
    /// </summary>
    public async Task<MiniKVResult<PutResult>> PutAsync(string key, Stream body, PutOptions? options = null, IProgress<long>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (EncodeKey(key) is not { } path)
        {
            return KeyError(key);
        }
        options ??= new PutOptions();
        var length = options.ContentLength ?? (body.CanSeek ? body.Length - body.Position : (long?)null);
        using var gate = new BodyGate(body, progress);

        HttpRequestMessage Build(string baseUrl)
        {
            var request = new HttpRequestMessage(HttpMethod.Put, MakeUri(baseUrl, path))
            {
                Content = new StreamContent(gate.BeginAttempt(), CopyBufferSize),
            };
            request.Content.Headers.ContentLength = length;
            if (options.ContentType is { } type)
            {
                request.Content.Headers.TryAddWithoutValidation("Content-Type", type);
            }
            if (options.IfMatch is { } etag)
            {
                request.Headers.TryAddWithoutValidation("If-Match", Quote(etag));
            }
            if (options.IfNoneMatchAny)
            {
                request.Headers.TryAddWithoutValidation("If-None-Match", "*");
            }
            // Lets a coordinator refuse (413, 503, 412) before the body is sent, which keeps a pipe's body
            // unread and so re-sendable to the next coordinator.
            request.Headers.ExpectContinue = length is not < 64 * 1024;
            return request;
        }

        bool CanResend() => gate.EndAttempt();

        var (response, error) = await SendAsync(Build, isWrite: true, CanResend, timeout: false, cancellationToken);
        if (response is null)
        {
            return error!;
        }
        using (response)
        {
            if (response.StatusCode != HttpStatusCode.Created && response.StatusCode != HttpStatusCode.OK)
            {
                return await ReadErrorAsync(response, cancellationToken);
            }
            return await ReadJsonAsync<PutResult>(response, cancellationToken);
        }
    }

    /// <summary>
    /// <c>GET /kv/{key}</c>, copying the bytes to <paramref name="destination"/> as they arrive. 404 is an error
    /// value (<see cref="MiniKVError.IsNotFound"/>); 304 is a success with <see cref="ObjectInfo.NotModified"/>.
    /// Exceptions from writing to <paramref name="destination"/> propagate; a coordinator that fails before the first
    /// byte is replaced by the next, one that fails mid-body gives <see cref="MiniKVError.ClientTransferInterrupted"/>.
    /// </summary>
    public async Task<MiniKVResult<ObjectInfo>> GetAsync(string key, Stream destination, GetOptions? options = null, IProgress<long>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (EncodeKey(key) is not { } path)
        {
            return KeyError(key);
        }
        options ??= new GetOptions();
        var (response, error) = await SendAsync(b => BuildRead(HttpMethod.Get, b, path, options), isWrite: false, static () => true, timeout: true, cancellationToken);
        if (response is null)
        {
            return error!;
        }
        using (response)
        {
            if (response.StatusCode is not (HttpStatusCode.OK or HttpStatusCode.PartialContent or HttpStatusCode.NotModified))
            {
                return await ReadErrorAsync(response, cancellationToken);
            }
            var info = ToObjectInfo(response);
            if (response.StatusCode == HttpStatusCode.NotModified)
            {
                return info;
            }
            options.HeadersReceived?.Invoke(info);
            var buffer = ArrayPool<byte>.Shared.Rent(CopyBufferSize);
            long written = 0;
            try
            {
                await using var source = await response.Content.ReadAsStreamAsync(cancellationToken);
                while (true)
                {
                    int read;
                    try
                    {
                        read = await source.ReadAsync(buffer, cancellationToken);
                    }
                    catch (Exception e) when (e is HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
                    {
                        return new MiniKVError(0, MiniKVError.ClientTransferInterrupted,
                            $"the connection broke after {written} bytes of '{key}' ({e.Message}); the output is incomplete, run the read again");
                    }
                    if (read == 0)
                    {
                        break;
                    }
                    await destination.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                    written += read;
                    progress?.Report(written);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            return info with { BytesWritten = written };
        }
    }

    /// <summary><c>HEAD /kv/{key}</c>: the headers of a GET without the body.</summary>
    public async Task<MiniKVResult<ObjectInfo>> HeadAsync(string key, GetOptions? options = null, CancellationToken cancellationToken = default)
    {
        if (EncodeKey(key) is not { } path)
        {
            return KeyError(key);
        }
        options ??= new GetOptions();
        var (response, error) = await SendAsync(b => BuildRead(HttpMethod.Head, b, path, options), isWrite: false, static () => true, timeout: true, cancellationToken);
        if (response is null)
        {
            return error!;
        }
        using (response)
        {
            if (response.StatusCode is not (HttpStatusCode.OK or HttpStatusCode.PartialContent or HttpStatusCode.NotModified))
            {
                // HEAD has no body: the status is all there is.
                return new MiniKVError((int)response.StatusCode, CodeForStatus(response.StatusCode), MessageForStatus(response.StatusCode), RetryAfter(response));
            }
            return ToObjectInfo(response);
        }
    }

    /// <summary><c>DELETE /kv/{key}</c>: true when deleted; 404 is an error value.</summary>
    public async Task<MiniKVResult<bool>> DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        if (EncodeKey(key) is not { } path)
        {
            return KeyError(key);
        }
        var (response, error) = await SendAsync(b => new HttpRequestMessage(HttpMethod.Delete, MakeUri(b, path)), isWrite: true, static () => true, timeout: true, cancellationToken);
        if (response is null)
        {
            return error!;
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                return await ReadErrorAsync(response, cancellationToken);
            }
            return true;
        }
    }

    /// <summary>One page of <c>GET /kv</c>: keys in byte order after <paramref name="startAfter"/>.</summary>
    public async Task<MiniKVResult<ListPage>> ListAsync(string? prefix = null, string? startAfter = null, int? limit = null, bool stale = false, CancellationToken cancellationToken = default)
    {
        var query = new List<string>(4);
        if (!string.IsNullOrEmpty(prefix))
        {
            query.Add("prefix=" + Uri.EscapeDataString(prefix));
        }
        if (!string.IsNullOrEmpty(startAfter))
        {
            query.Add("start_after=" + Uri.EscapeDataString(startAfter));
        }
        if (limit is { } l)
        {
            query.Add("limit=" + l.ToString(CultureInfo.InvariantCulture));
        }
        if (stale)
        {
            query.Add("consistency=stale");
        }
        var path = "kv" + (query.Count > 0 ? "?" + string.Join('&', query) : "");
        return await GetJsonAsync<ListPage>(path, cancellationToken);
    }

    /// <summary>
    /// Every key under <paramref name="prefix"/>, fetching pages of <paramref name="pageSize"/> as the caller
    /// enumerates. An error on a later page throws <see cref="MiniKVException"/> (an enumeration has no other way
    /// to say it).
    /// </summary>
    public async IAsyncEnumerable<ListEntry> ListAllAsync(string? prefix = null, int pageSize = 1000, bool stale = false, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string? after = null;
        while (true)
        {
            var page = (await ListAsync(prefix, after, pageSize, stale, cancellationToken)).GetValueOrThrow();
            foreach (var entry in page.Keys)
            {
                yield return entry;
            }
            if (!page.Truncated || page.Keys.Count == 0)
            {
                yield break;
            }
            after = page.NextStartAfter ?? page.Keys[^1].Key;
        }
    }

    /// <summary><c>GET /admin/status</c>.</summary>
    public async Task<MiniKVResult<ClusterStatus>> StatusAsync(CancellationToken cancellationToken = default)
    {
        var raw = await GetJsonAsync<JsonElement>("admin/status", cancellationToken);
        if (!raw.IsSuccess)
        {
            return raw.Error!;
        }
        var root = raw.Value;
        if (root.ValueKind != JsonValueKind.Object)
        {
            return new MiniKVError(0, MiniKVError.ClientBadResponse, "/admin/status did not answer a JSON object");
        }
        return new ClusterStatus(
            root.TryGetProperty("leader", out var leader) && leader.ValueKind == JsonValueKind.String ? leader.GetString() : null,
            root.TryGetProperty("term", out var term) && term.ValueKind == JsonValueKind.Number && term.TryGetInt64(out var t) ? t : 0,
            root.TryGetProperty("replicas", out var replicas) && replicas.ValueKind == JsonValueKind.Number && replicas.TryGetInt32(out var r) ? r : null,
            root.TryGetProperty("keys", out var keys) && keys.ValueKind == JsonValueKind.Number && keys.TryGetInt64(out var k) ? k : null,
            root);
    }

    /// <summary>Starts an admin job (<c>POST /admin/{kind}</c>, 202 <c>{"job":"ID"}</c>) and answers its id.</summary>
    public async Task<MiniKVResult<string>> StartJobAsync(JobRequest job, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        var path = job.Path;
        var (response, error) = await SendAsync(b => new HttpRequestMessage(HttpMethod.Post, MakeUri(b, path)), isWrite: true, static () => true, timeout: true, cancellationToken);
        if (response is null)
        {
            return error!;
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                return await ReadErrorAsync(response, cancellationToken);
            }
            var started = await ReadJsonAsync<JsonElement>(response, cancellationToken);
            if (!started.IsSuccess)
            {
                return started.Error!;
            }
            return started.Value.ValueKind == JsonValueKind.Object && started.Value.TryGetProperty("job", out var id) && id.ValueKind == JsonValueKind.String
                ? id.GetString()!
                : new MiniKVError(0, MiniKVError.ClientBadResponse, $"POST /{path} answered no job id");
        }
    }

    /// <summary>
    /// <c>DELETE /admin/volumes/{id}</c>: drops a drained volume from the registry. A volume that still holds keys is
    /// a 409 <c>volume_not_empty</c> error value.
    /// </summary>
    public async Task<MiniKVResult<bool>> RemoveVolumeAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(volumeId);
        var path = "admin/volumes/" + Uri.EscapeDataString(volumeId);
        var (response, error) = await SendAsync(b => new HttpRequestMessage(HttpMethod.Delete, MakeUri(b, path)), isWrite: true, static () => true, timeout: true, cancellationToken);
        if (response is null)
        {
            return error!;
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                return await ReadErrorAsync(response, cancellationToken);
            }
            return true;
        }
    }

    /// <summary><c>GET /admin/jobs/{id}</c>.</summary>
    public Task<MiniKVResult<JobStatus>> GetJobAsync(string id, CancellationToken cancellationToken = default) =>
        GetJsonAsync<JobStatus>("admin/jobs/" + Uri.EscapeDataString(id), cancellationToken);

    /// <summary>
    /// Polls a job every <paramref name="pollInterval"/> until it is done or failed, reporting each poll. Unreachable
    /// coordinators and 503 (a leader change) are waited out for up to <paramref name="transientBudget"/> (default 30 s).
    /// </summary>
    public async Task<MiniKVResult<JobStatus>> WaitForJobAsync(string id, IProgress<JobStatus>? progress = null, TimeSpan? pollInterval = null, TimeSpan? transientBudget = null, CancellationToken cancellationToken = default)
    {
        var interval = pollInterval ?? TimeSpan.FromMilliseconds(500);
        var budget = transientBudget ?? TimeSpan.FromSeconds(30);
        DateTime? failingSince = null;
        while (true)
        {
            var status = await GetJobAsync(id, cancellationToken);
            if (status.IsSuccess)
            {
                failingSince = null;
                progress?.Report(status.Value!);
                if (status.Value!.IsFinished)
                {
                    return status;
                }
            }
            else if (status.Error!.Status is 0 or 503 && status.Error.Code != MiniKVError.ClientBadResponse)
            {
                failingSince ??= DateTime.UtcNow;
                if (DateTime.UtcNow - failingSince > budget)
                {
                    return status;
                }
            }
            else
            {
                return status;
            }
            await Task.Delay(interval, cancellationToken);
        }
    }

    public void Dispose() => _http.Dispose();

    private async Task<MiniKVResult<T>> GetJsonAsync<T>(string path, CancellationToken cancellationToken)
    {
        var (response, error) = await SendAsync(b => new HttpRequestMessage(HttpMethod.Get, MakeUri(b, path)), isWrite: false, static () => true, timeout: true, cancellationToken);
        if (response is null)
        {
            return error!;
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                return await ReadErrorAsync(response, cancellationToken);
            }
            return await ReadJsonAsync<T>(response, cancellationToken);
        }
    }

    private static HttpRequestMessage BuildRead(HttpMethod method, string baseUrl, string path, GetOptions options)
    {
        var request = new HttpRequestMessage(method, MakeUri(baseUrl, options.Stale ? path + "?consistency=stale" : path));
        if (options.RangeFrom is not null || options.RangeTo is not null)
        {
            request.Headers.Range = new RangeHeaderValue(options.RangeFrom ?? 0, options.RangeTo);
        }
        if (options.IfNoneMatch is { } etag)
        {
            request.Headers.TryAddWithoutValidation("If-None-Match", Quote(etag));
        }
        return request;
    }

    private static ObjectInfo ToObjectInfo(HttpResponseMessage response)
    {
        var content = response.Content.Headers;
        return new ObjectInfo
        {
            Status = (int)response.StatusCode,
            ContentLength = content.ContentLength ?? -1,
            ETag = response.Headers.ETag?.Tag ?? (response.Headers.TryGetValues("ETag", out var tags) ? tags.FirstOrDefault() : null),
            ContentType = content.ContentType?.ToString(),
            LastModified = content.LastModified,
            TotalSize = content.ContentRange?.Length,
        };
    }

    private static Uri MakeUri(string baseUrl, string pathAndQuery) => new(baseUrl + "/" + pathAndQuery, in VerbatimPath);

    /// <summary>The URL path of a key, or null when the key breaks SPEC's key rules.</summary>
    private static string? EncodeKey(string key) =>
        KeyRules.TryEncode(key, out var bytes, out _) ? "kv/" + EncodeKeyPath(bytes) : null;

    /// <summary>
    /// Percent-encodes like <see cref="KeyRules.EncodePath"/> but escapes '.' in segments that are only dots, so no
    /// proxy or server resolves "a/../b" into another key.
    /// </summary>
    private static string EncodeKeyPath(byte[] key)
    {
        var encoded = KeyRules.EncodePath(key);
        if (!encoded.Contains('.', StringComparison.Ordinal))
        {
            return encoded;
        }
        var segments = encoded.Split('/');
        for (var i = 0; i < segments.Length; i++)
        {
            if (segments[i] is "." or "..")
            {
                segments[i] = segments[i].Replace(".", "%2E", StringComparison.Ordinal);
            }
        }
        return string.Join('/', segments);
    }

    private static MiniKVError KeyError(string key)
    {
        KeyRules.TryEncode(key, out _, out var reason);
        return new MiniKVError(0, "bad_key", reason ?? "the key is not valid");
    }

    private static string Quote(string etag) =>
        etag == "*" || (etag.Length >= 2 && etag[0] == '"' && etag[^1] == '"') || etag.StartsWith("W/", StringComparison.Ordinal) ? etag : "\"" + etag + "\"";
}
