using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace MiniKV.Workloads.Tests.Support;

/// <summary>How a request ended, as a workload must judge it.</summary>
public enum KvOutcome
{
    Ok,
    NotFound,
    PreconditionFailed,
    /// <summary>An answer that says nothing about the effect (503, 504, other unexpected codes but 500): treated as unknown.</summary>
    Unavailable,
    /// <summary>No answer: timeout, reset, refused. The effect is unknown.</summary>
    NoAnswer,
    /// <summary>A 500: never allowed.</summary>
    ServerError,
}

public sealed record KvResponse(KvOutcome Outcome, HttpStatusCode? Status, byte[] Body, string? ETag, string? Detail)
{
    /// <summary>Whether the request certainly had its effect or certainly looked (not a timeout, reset or 503).</summary>
    public bool IsDefinite => Outcome is KvOutcome.Ok or KvOutcome.NotFound or KvOutcome.PreconditionFailed;

    /// <summary>The outcome with its status code, as counted in reports ("Unavailable 503").</summary>
    public string Label => Status is { } s ? $"{Outcome} {(int)s}" : Outcome.ToString();

    /// <summary>
    /// Client pacing after an answer that was not definite: a client pinned to a dead or isolated coordinator would
    /// otherwise spin on refused connections and flood the history with open operations.
    /// </summary>
    public async Task BackOffIfIndefiniteAsync(Random random)
    {
        if (!IsDefinite)
        {
            await Task.Delay(random.Next(50, 250));
        }
    }

    public override string ToString() => $"{Outcome} ({(Status is { } s ? ((int)s).ToString(System.Globalization.CultureInfo.InvariantCulture) : Detail)})";
}

/// <summary>One list page: the keys and where the next page starts (null when this was the last).</summary>
public sealed record KvListPage(IReadOnlyList<string> Keys, string? NextStartAfter);

/// <summary>
/// The public HTTP API as the workloads use it: every call has a deadline and answers a <see cref="KvResponse"/>,
/// never an exception, so a workload maps each outcome to what it proves (an effect, no effect, or unknown).
/// </summary>
public sealed class KvClient(HttpClient http, TimeSpan timeout)
{
    public static HttpClient NewHttpClient() => new(new SocketsHttpHandler
    {
        PooledConnectionLifetime = TimeSpan.FromSeconds(30),
        ConnectTimeout = TimeSpan.FromSeconds(3),
        AllowAutoRedirect = false,
    })
    { Timeout = Timeout.InfiniteTimeSpan };

    public static Uri KeyUri(Uri node, string key) => new(node, "/kv/" + Uri.EscapeDataString(key));

    public Task<KvResponse> GetAsync(Uri node, string key) => SendAsync(new HttpRequestMessage(HttpMethod.Get, KeyUri(node, key)));

    public Task<KvResponse> DeleteAsync(Uri node, string key) => SendAsync(new HttpRequestMessage(HttpMethod.Delete, KeyUri(node, key)));

    /// <summary>PUT; <paramref name="ifMatch"/> is a quoted ETag for If-Match, "*" for If-None-Match: * (create only), or null (unconditional).</summary>
    public Task<KvResponse> PutAsync(Uri node, string key, byte[] value, string? ifMatch = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Put, KeyUri(node, key)) { Content = new ByteArrayContent(value) };
        if (ifMatch == "*")
        {
            request.Headers.IfNoneMatch.Add(EntityTagHeaderValue.Any);
        }
        else if (ifMatch != null)
        {
            request.Headers.IfMatch.Add(EntityTagHeaderValue.Parse(ifMatch));
        }
        return SendAsync(request);
    }

    public async Task<(KvResponse Response, KvListPage? Page)> ListAsync(Uri node, string prefix, string? startAfter, int limit)
    {
        var query = "/kv?prefix=" + Uri.EscapeDataString(prefix) + "&limit=" + limit.ToString(System.Globalization.CultureInfo.InvariantCulture)
            + (startAfter != null ? "&start_after=" + Uri.EscapeDataString(startAfter) : "");
        var response = await SendAsync(new HttpRequestMessage(HttpMethod.Get, new Uri(node, query)));
        if (response.Outcome != KvOutcome.Ok)
        {
            return (response, null);
        }
        using var doc = JsonDocument.Parse(response.Body);
        var keys = doc.RootElement.GetProperty("keys").EnumerateArray().Select(k => k.GetProperty("key").GetString()!).ToList();
        var next = doc.RootElement.TryGetProperty("next_start_after", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
        var truncated = doc.RootElement.GetProperty("truncated").GetBoolean();
        return (response, new KvListPage(keys, truncated ? next : null));
    }

    private async Task<KvResponse> SendAsync(HttpRequestMessage request)
    {
        using var _ = request;
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token);
            var body = await response.Content.ReadAsByteArrayAsync(deadline.Token);
            var etag = response.Headers.ETag?.ToString();
            var outcome = response.StatusCode switch
            {
                HttpStatusCode.OK or HttpStatusCode.Created or HttpStatusCode.NoContent => KvOutcome.Ok,
                HttpStatusCode.NotFound => KvOutcome.NotFound,
                HttpStatusCode.PreconditionFailed => KvOutcome.PreconditionFailed,
                HttpStatusCode.InternalServerError => KvOutcome.ServerError,
                _ => KvOutcome.Unavailable,
            };
            var detail = outcome is KvOutcome.Ok ? null : System.Text.Encoding.UTF8.GetString(body.AsSpan(0, Math.Min(body.Length, 300)));
            return new KvResponse(outcome, response.StatusCode, body, etag, detail);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException or System.Net.Sockets.SocketException)
        {
            return new KvResponse(KvOutcome.NoAnswer, null, [], null, e.GetType().Name);
        }
    }
}
