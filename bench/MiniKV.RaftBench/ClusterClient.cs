using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text;

namespace MiniKV.RaftBench;

/// <summary>A client of a 3-member cluster that finds the leader itself and retries across members.</summary>
internal abstract class ClusterClient : IDisposable
{
    protected static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(3);

    protected ClusterClient()
    {
        Http = new HttpClient(new SocketsHttpHandler
        {
            MaxConnectionsPerServer = 1024,
            ConnectTimeout = TimeSpan.FromSeconds(1),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
        })
        { Timeout = RequestTimeout };
    }

    protected HttpClient Http { get; }

    /// <summary>Proposes until acknowledged (true) or <paramref name="cancellationToken"/> fires (false). Retries keep <paramref name="requestId"/>.</summary>
    public abstract Task<bool> ProposeAsync(Guid requestId, byte[] payload, CancellationToken cancellationToken);

    /// <summary>One linearizable read, retried until served (true) or cancelled (false).</summary>
    public abstract Task<bool> ReadAsync(CancellationToken cancellationToken);

    /// <summary>The member name that leads now, or null when none answers.</summary>
    public abstract Task<string?> LeaderNameAsync(CancellationToken cancellationToken);

    /// <summary>Whether every member answers (a restarted member is back), so the next kill cannot take away the quorum.</summary>
    public abstract Task<bool> AllMembersUpAsync(CancellationToken cancellationToken);

    public void Dispose() => Http.Dispose();

    protected static async Task BackoffAsync(int attempt, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(Math.Min(5 * attempt, 50), cancellationToken);
        }
        catch (OperationCanceledException)
        {
        }
    }
}

/// <summary>Client of RaftBench nodes (<see cref="NodeHttpApi"/>). Members are named by their Raft node id.</summary>
internal sealed class RaftClusterClient : ClusterClient
{
    private readonly ConcurrentDictionary<string, string> _urls = new(StringComparer.Ordinal);
    private volatile string? _leader;

    /// <param name="members">node id → base URL (http://host:port).</param>
    public RaftClusterClient(IEnumerable<KeyValuePair<string, string>> members)
    {
        foreach (var (id, url) in members)
        {
            _urls[id] = url.TrimEnd('/');
        }
    }

    /// <summary>Learns each URL's node id from /status (for <c>load --targets URL,...</c>).</summary>
    public static async Task<RaftClusterClient> DiscoverAsync(IReadOnlyList<string> urls, TimeSpan timeout)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var members = new Dictionary<string, string>(StringComparer.Ordinal);
        var deadline = DateTime.UtcNow + timeout;
        foreach (var url in urls)
        {
            while (true)
            {
                try
                {
                    var status = await http.GetStringAsync(url.TrimEnd('/') + "/status");
                    members[NodeStatus.Parse(status).Id] = url;
                    break;
                }
                catch (HttpRequestException) when (DateTime.UtcNow < deadline)
                {
                    await Task.Delay(100);
                }
                catch (TaskCanceledException) when (DateTime.UtcNow < deadline)
                {
                }
            }
        }
        return new RaftClusterClient(members);
    }

    /// <summary>Points a member at a new URL (a restarted node on a new port).</summary>
    public void SetMember(string id, string url) => _urls[id] = url.TrimEnd('/');

    public IReadOnlyDictionary<string, string> Members => _urls;

    public override async Task<bool> ProposeAsync(Guid requestId, byte[] payload, CancellationToken cancellationToken)
    {
        var path = "/propose?id=" + requestId.ToString("D");
        for (var attempt = 0; !cancellationToken.IsCancellationRequested; attempt++)
        {
            var target = PickTarget(attempt);
            var answer = await PostAsync(target, path, payload, cancellationToken);
            if (answer is null)
            {
                ForgetLeader(target);
            }
            else if (answer.StartsWith("applied ", StringComparison.Ordinal))
            {
                _leader = target;
                return true;
            }
            else if (answer.StartsWith("notleader ", StringComparison.Ordinal))
            {
                var hint = answer["notleader ".Length..].Trim();
                _leader = _urls.GetValueOrDefault(hint) is { } url && url != target ? url : null;
                if (_leader != null)
                {
                    continue;
                }
            }
            await BackoffAsync(attempt + 1, cancellationToken);
        }
        return false;
    }

    public override async Task<bool> ReadAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 0; !cancellationToken.IsCancellationRequested; attempt++)
        {
            var target = PickTarget(attempt);
            var answer = await GetAsync(target + "/read", cancellationToken);
            if (answer is not null && answer.StartsWith("ok ", StringComparison.Ordinal))
            {
                _leader = target;
                return true;
            }
            if (answer is not null && answer.StartsWith("notleader ", StringComparison.Ordinal)
                && _urls.GetValueOrDefault(answer["notleader ".Length..].Trim()) is { } url && url != target)
            {
                _leader = url;
                continue;
            }
            ForgetLeader(target);
            await BackoffAsync(attempt + 1, cancellationToken);
        }
        return false;
    }

    public override async Task<string?> LeaderNameAsync(CancellationToken cancellationToken)
    {
        foreach (var (id, url) in _urls)
        {
            if (await GetAsync(url + "/status", cancellationToken) is { } text && NodeStatus.Parse(text).IsLeader)
            {
                return id;
            }
        }
        return null;
    }

    public override async Task<bool> AllMembersUpAsync(CancellationToken cancellationToken)
    {
        foreach (var id in _urls.Keys)
        {
            if (await StatusAsync(id, cancellationToken) is not { Leader: not "?" })
            {
                return false;
            }
        }
        return true;
    }

    public async Task<NodeStatus?> StatusAsync(string id, CancellationToken cancellationToken) =>
        await GetAsync(_urls[id] + "/status", cancellationToken) is { } text ? NodeStatus.Parse(text) : null;

    public async Task<List<Guid>?> AppliedAsync(string id, CancellationToken cancellationToken)
    {
        if (await GetAsync(_urls[id] + "/applied", cancellationToken) is not { } text)
        {
            return null;
        }
        return [.. text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(Guid.Parse)];
    }

    private string PickTarget(int attempt)
    {
        if (_leader is { } leader)
        {
            return leader;
        }
        var urls = _urls.Values.Order(StringComparer.Ordinal).ToArray();
        return urls[(attempt + Environment.CurrentManagedThreadId) % urls.Length];
    }

    private void ForgetLeader(string target) => Interlocked.CompareExchange(ref _leader, null, target);

    private async Task<string?> PostAsync(string baseUrl, string path, byte[] payload, CancellationToken cancellationToken)
    {
        try
        {
            using var content = new ByteArrayContent(payload);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var response = await Http.PostAsync(baseUrl + path, content, cancellationToken);
            return response.IsSuccessStatusCode ? await response.Content.ReadAsStringAsync(cancellationToken) : null;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            return null;
        }
    }

    private async Task<string?> GetAsync(string url, CancellationToken cancellationToken)
    {
        try
        {
            using var response = await Http.GetAsync(url, cancellationToken);
            return response.IsSuccessStatusCode ? await response.Content.ReadAsStringAsync(cancellationToken) : null;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            return null;
        }
    }
}

/// <summary>A parsed <c>GET /status</c> line.</summary>
internal sealed record NodeStatus(string Id, string Leader, long Term, bool IsLeader, long Commit, long Applied, long Count)
{
    public static NodeStatus Parse(string text)
    {
        var fields = text.Trim().Split(' ').Select(f => f.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);
        return new NodeStatus(fields["id"], fields["leader"], long.Parse(fields["term"], System.Globalization.CultureInfo.InvariantCulture),
            fields["isleader"] == "true", long.Parse(fields["commit"], System.Globalization.CultureInfo.InvariantCulture),
            long.Parse(fields["applied"], System.Globalization.CultureInfo.InvariantCulture), long.Parse(fields["count"], System.Globalization.CultureInfo.InvariantCulture));
    }
}

/// <summary>
/// Client of etcd 3.4 through its HTTP/JSON gateway: <c>POST /v3/kv/put</c> and linearizable <c>POST /v3/kv/range</c>
/// on any member (followers forward to the leader); <c>POST /v3/maintenance/status</c> finds the leader.
/// Members are named by the caller (m1, m2, m3).
/// </summary>
internal sealed class EtcdClusterClient(IReadOnlyList<KeyValuePair<string, string>> members) : ClusterClient
{
    private int _preferred;

    public override async Task<bool> ProposeAsync(Guid requestId, byte[] payload, CancellationToken cancellationToken)
    {
        var body = "{\"key\":\"" + Convert.ToBase64String(Encoding.ASCII.GetBytes("k/" + requestId.ToString("N"))) + "\",\"value\":\"" + Convert.ToBase64String(payload) + "\"}";
        return await CallAsync("/v3/kv/put", body, cancellationToken);
    }

    public override Task<bool> ReadAsync(CancellationToken cancellationToken) =>
        CallAsync("/v3/kv/range", "{\"key\":\"" + Convert.ToBase64String("k/read"u8) + "\"}", cancellationToken);

    public override async Task<string?> LeaderNameAsync(CancellationToken cancellationToken)
    {
        foreach (var (name, url) in members)
        {
            try
            {
                using var content = new StringContent("{}", Encoding.UTF8, "application/json");
                using var response = await Http.PostAsync(url.TrimEnd('/') + "/v3/maintenance/status", content, cancellationToken);
                if (!response.IsSuccessStatusCode)
                {
                    continue;
                }
                using var doc = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
                var self = doc.RootElement.GetProperty("header").GetProperty("member_id").GetString();
                var leader = doc.RootElement.TryGetProperty("leader", out var l) ? l.GetString() : null;
                if (self != null && self == leader)
                {
                    return name;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException or System.Text.Json.JsonException or KeyNotFoundException)
            {
            }
        }
        return null;
    }

    public override async Task<bool> AllMembersUpAsync(CancellationToken cancellationToken)
    {
        foreach (var (_, url) in members)
        {
            try
            {
                var health = await Http.GetStringAsync(url.TrimEnd('/') + "/health", cancellationToken);
                if (!health.Contains("true", StringComparison.Ordinal))
                {
                    return false;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
            {
                return false;
            }
        }
        return true;
    }

    private async Task<bool> CallAsync(string path, string json, CancellationToken cancellationToken)
    {
        for (var attempt = 0; !cancellationToken.IsCancellationRequested; attempt++)
        {
            var index = Volatile.Read(ref _preferred);
            var url = members[index % members.Count].Value.TrimEnd('/') + path;
            try
            {
                using var content = new StringContent(json, Encoding.UTF8, "application/json");
                using var response = await Http.PostAsync(url, content, cancellationToken);
                if (response.IsSuccessStatusCode)
                {
                    var text = await response.Content.ReadAsStringAsync(cancellationToken);
                    if (text.Contains("\"header\"", StringComparison.Ordinal) && !text.Contains("\"error\"", StringComparison.Ordinal))
                    {
                        return true;
                    }
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
            {
            }
            Interlocked.CompareExchange(ref _preferred, index + 1, index);
            await BackoffAsync(attempt + 1, cancellationToken);
        }
        return false;
    }
}
