using System.Net;
using System.Text;
using System.Text.Json;

namespace MiniKV.Client;

public sealed partial class MiniKVClient
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>
    /// Sends one request, failing over across the coordinators as the class comment says. Answers the response
    /// (headers read, body not yet) or the error that ended the attempts.
    /// </summary>
    private async Task<(HttpResponseMessage? Response, MiniKVError? Error)> SendAsync(
        Func<string, HttpRequestMessage> build, bool isWrite, Func<bool> canResend, bool timeout, CancellationToken cancellationToken)
    {
        var count = _bases.Length;
        var first = Volatile.Read(ref _preferred);
        MiniKVError? last = null;
        var tried = new List<string>(count);
        for (var attempt = 0; attempt < count; attempt++)
        {
            var index = (first + attempt) % count;
            var baseUrl = _bases[index];
            if (attempt > 0 && !canResend())
            {
                return (null, last! with { Message = last.Message + " (the body was already read from a stream that cannot rewind, so it was not sent to another coordinator)" });
            }
            tried.Add(baseUrl);
            var request = build(baseUrl);
            request.Version = _http.DefaultRequestVersion; // SendAsync does not apply the client's defaults
            request.VersionPolicy = _http.DefaultVersionPolicy;
            using var deadline = timeout ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken) : null;
            deadline?.CancelAfter(_requestTimeout);
            try
            {
                var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline?.Token ?? cancellationToken);
                if (response.StatusCode == HttpStatusCode.ServiceUnavailable && attempt < count - 1)
                {
                    last = await ReadErrorAsync(response, cancellationToken); // SPEC: 503 is never applied
                    request.Dispose();
                    continue;
                }
                Volatile.Write(ref _preferred, LeaderIndex(response) ?? index);
                return (response, null);
            }
            catch (HttpRequestException e) when (!cancellationToken.IsCancellationRequested)
            {
                request.Dispose();
                var neverConnected = e.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError
                    or HttpRequestError.SecureConnectionError or HttpRequestError.ProxyTunnelError;
                if (isWrite && !neverConnected)
                {
                    return (null, OutcomeUnknown(baseUrl, e.Message));
                }
                last = new MiniKVError(0, MiniKVError.ClientUnreachable, $"cannot reach {string.Join(", ", tried)}: {e.Message}");
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                request.Dispose();
                var answerTimedOut = deadline?.IsCancellationRequested == true;
                if (isWrite && answerTimedOut)
                {
                    return (null, OutcomeUnknown(baseUrl, $"no answer within {_requestTimeout.TotalSeconds:0.#} s"));
                }
                // Without our deadline firing, this is the handler's connect timeout: nothing was sent.
                last = new MiniKVError(0, MiniKVError.ClientUnreachable, answerTimedOut
                    ? $"no answer from {baseUrl} within {_requestTimeout.TotalSeconds:0.#} s"
                    : $"cannot reach {string.Join(", ", tried)}: connect timed out");
            }
        }
        return (null, last);
    }

    /// <summary>
    /// The index of the coordinator a response names as the leader (<see cref="LeaderHeader"/>), when it is one of
    /// ours. Following it saves every later request the follower's forwarding hop (a second HTTP exchange on the
    /// follower and one more network round trip); a name that matches none of our URLs leaves the order as it was.
    /// </summary>
    private int? LeaderIndex(HttpResponseMessage response)
    {
        if (!response.Headers.TryGetValues(LeaderHeader, out var values))
        {
            return null;
        }
        foreach (var value in values)
        {
            if (!Uri.TryCreate(value, UriKind.Absolute, out var leader))
            {
                continue;
            }
            for (var i = 0; i < _baseUris.Length; i++)
            {
                var b = _baseUris[i];
                if (b.Port == leader.Port && b.AbsolutePath == "/" && string.Equals(b.Scheme, leader.Scheme, StringComparison.OrdinalIgnoreCase)
                    && string.Equals(b.IdnHost, leader.IdnHost, StringComparison.OrdinalIgnoreCase))
                {
                    return i;
                }
            }
        }
        return null;
    }

    private static MiniKVError OutcomeUnknown(string baseUrl, string detail) =>
        new(0, MiniKVError.ClientOutcomeUnknown, $"the connection to {baseUrl} broke after the write was sent ({detail}); it may or may not have been applied, read the key to find out");

    /// <summary>SPEC's error body, or a code and message made from the status when the body is not that JSON. Disposes the response.</summary>
    internal static async Task<MiniKVError> ReadErrorAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        using (response)
        {
            var status = response.StatusCode;
            string text;
            try
            {
                await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
                var buffer = new byte[MaxErrorBodyBytes];
                var length = 0;
                int read;
                while (length < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken)) > 0)
                {
                    length += read;
                }
                text = Encoding.UTF8.GetString(buffer, 0, length);
            }
            catch (Exception e) when (e is HttpRequestException or IOException)
            {
                text = "";
            }
            string? code = null;
            string? message = null;
            if (text.Length > 0 && text.TrimStart().StartsWith('{'))
            {
                try
                {
                    using var document = JsonDocument.Parse(text);
                    var root = document.RootElement;
                    if (root.ValueKind == JsonValueKind.Object)
                    {
                        code = root.TryGetProperty("error", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
                        message = root.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
                    }
                }
                catch (JsonException)
                {
                    // Not SPEC's error JSON (e.g. a proxy's page): fall back to the status below.
                }
            }
            if (message is null && text.Length > 0 && code is null)
            {
                message = text.Trim().ReplaceLineEndings(" ");
                if (message.Length > 300)
                {
                    message = message[..300] + "...";
                }
            }
            return new MiniKVError((int)status, code ?? CodeForStatus(status), string.IsNullOrWhiteSpace(message) ? MessageForStatus(status) : message, RetryAfter(response));
        }
    }

    private static async Task<MiniKVResult<T>> ReadJsonAsync<T>(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
            var value = await JsonSerializer.DeserializeAsync<T>(stream, Json, cancellationToken);
            return value is null
                ? new MiniKVError(0, MiniKVError.ClientBadResponse, $"{response.RequestMessage?.RequestUri?.AbsolutePath} answered null")
                : value;
        }
        catch (JsonException e)
        {
            return new MiniKVError(0, MiniKVError.ClientBadResponse, $"{response.RequestMessage?.RequestUri?.AbsolutePath} answered JSON this client cannot read: {e.Message}");
        }
        catch (Exception e) when (e is HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
        {
            return new MiniKVError(0, MiniKVError.ClientTransferInterrupted, $"the answer of {response.RequestMessage?.RequestUri?.AbsolutePath} broke off: {e.Message}");
        }
    }

    internal static TimeSpan? RetryAfter(HttpResponseMessage response) =>
        response.Headers.RetryAfter is { } retry
            ? retry.Delta ?? (retry.Date is { } date ? date - DateTimeOffset.UtcNow : null)
            : null;

    internal static string CodeForStatus(HttpStatusCode status) => status switch
    {
        HttpStatusCode.BadRequest => "bad_request",
        HttpStatusCode.Unauthorized => "unauthorized",
        HttpStatusCode.NotFound => "not_found",
        HttpStatusCode.MethodNotAllowed => "method_not_allowed",
        HttpStatusCode.PreconditionFailed => "precondition_failed",
        HttpStatusCode.RequestEntityTooLarge => "too_large",
        HttpStatusCode.ServiceUnavailable => "unavailable",
        HttpStatusCode.GatewayTimeout => "outcome_unknown",
        HttpStatusCode.InsufficientStorage => "volumes_full",
        _ => "http_" + ((int)status).ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    internal static string MessageForStatus(HttpStatusCode status) => status switch
    {
        HttpStatusCode.NotFound => "not found",
        HttpStatusCode.PreconditionFailed => "the condition (If-Match / If-None-Match) was not met",
        HttpStatusCode.RequestEntityTooLarge => "the value is larger than the cluster's --max-value-size",
        HttpStatusCode.ServiceUnavailable => "the cluster cannot serve now (no leader or too few healthy volumes); try again shortly",
        HttpStatusCode.GatewayTimeout => "the write's outcome is not known yet; read the key to find out",
        _ => $"the coordinator answered {(int)status} {status}",
    };

    /// <summary>
    /// The caller's PUT body shared by the attempts of one call. HttpClient may still be reading an attempt's body
    /// after its early answer (503) came back, so each attempt reads through its own view, and ending an attempt
    /// cuts that view off (under the same lock as reads) before the next one may rewind the stream. Counts the
    /// bytes read (progress, and whether a non-seekable body can still be sent again); leaves the stream open.
    /// </summary>
    private sealed class BodyGate(Stream body, IProgress<long>? progress) : IDisposable
    {
        private readonly SemaphoreSlim _lock = new(1, 1);
        private readonly long _start = body.CanSeek ? body.Position : 0;
        private int _attempt;
        private long _consumed;

        public Stream BeginAttempt()
        {
            _lock.Wait();
            try
            {
                if (_consumed > 0)
                {
                    body.Position = _start; // EndAttempt allowed this only for a seekable body
                    _consumed = 0;
                }
                return new AttemptStream(this, ++_attempt);
            }
            finally
            {
                _lock.Release();
            }
        }

        /// <summary>Cuts the current attempt off; true when the body can be sent again (nothing read, or seekable).</summary>
        public bool EndAttempt()
        {
            _lock.Wait();
            try
            {
                _attempt++;
                return _consumed == 0 || body.CanSeek;
            }
            finally
            {
                _lock.Release();
            }
        }

        /// <summary>
        /// Ends the last attempt. The lock is not disposed: an abandoned send may still be waiting on it, and must
        /// wake to find itself cut off rather than fail on a disposed object.
        /// </summary>
        public void Dispose() => EndAttempt();

        private async ValueTask<int> ReadAsync(int attempt, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            await _lock.WaitAsync(cancellationToken);
            try
            {
                if (attempt != _attempt)
                {
                    throw new IOException("this request's body was superseded by a request to another coordinator");
                }
                var read = await body.ReadAsync(buffer, cancellationToken);
                _consumed += read;
                if (read > 0)
                {
                    progress?.Report(_consumed);
                }
                return read;
            }
            finally
            {
                _lock.Release();
            }
        }

        private sealed class AttemptStream(BodyGate gate, int attempt) : Stream
        {
            public override bool CanRead => true;

            public override bool CanSeek => false;

            public override bool CanWrite => false;

            public override long Length => throw new NotSupportedException();

            public override long Position
            {
                get => throw new NotSupportedException();
                set => throw new NotSupportedException();
            }

            public override int Read(byte[] buffer, int offset, int count) => gate.ReadAsync(attempt, buffer.AsMemory(offset, count), default).AsTask().GetAwaiter().GetResult();

            public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => gate.ReadAsync(attempt, buffer, cancellationToken);

            public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
                gate.ReadAsync(attempt, buffer.AsMemory(offset, count), cancellationToken).AsTask();

            public override void Flush()
            {
            }

            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

            public override void SetLength(long value) => throw new NotSupportedException();

            public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        }
    }
}
