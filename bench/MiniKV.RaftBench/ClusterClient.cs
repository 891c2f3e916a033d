using System.Collections.Concurrent;
using System.Net;
using System.Text;
using Grpc.Core;
using Grpc.Net.Client;

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

    /// <summary>Waits until every member has caught up with the commit index the leader had when called (false: timed out).</summary>
    public abstract Task<bool> AllCaughtUpAsync(TimeSpan timeout);

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
    private readonly ConcurrentDictionary<string, ConnectionPool> _pools = new(StringComparer.Ordinal);
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
    public static async Task<RaftClusterClient> DiscoverAsync(IReadOnlyList<string> urls, TimeSpan timeout, int connections)
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
        return new RaftClusterClient(members) { ConnectionsPerMember = connections };
    }

    /// <summary>Points a member at a new URL (a restarted node on a new port).</summary>
    public void SetMember(string id, string url) => _urls[id] = url.TrimEnd('/');

    public IReadOnlyDictionary<string, string> Members => _urls;

    /// <summary>Connections opened to each member's binary port; proposers share them round robin.</summary>
    public int ConnectionsPerMember { get; init; } = 2;

    public override async Task<bool> ProposeAsync(Guid requestId, byte[] payload, CancellationToken cancellationToken)
    {
        for (var attempt = 0; !cancellationToken.IsCancellationRequested; attempt++)
        {
            var target = PickTarget(attempt);
            var answer = await CallAsync(target, ClientOp.Propose, requestId, payload, cancellationToken);
            if (answer is null)
            {
                ForgetLeader(target);
            }
            else if (answer.Status == ClientStatus.Applied)
            {
                _leader = target;
                return true;
            }
            else if (answer.Status == ClientStatus.NotLeader)
            {
                _leader = answer.Hint is { } hint && _urls.GetValueOrDefault(hint) is { } url && url != target ? url : null;
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
            var answer = await CallAsync(target, ClientOp.Read, Guid.Empty, [], cancellationToken);
            if (answer is { Status: ClientStatus.ReadOk })
            {
                _leader = target;
                return true;
            }
            if (answer is { Status: ClientStatus.NotLeader, Hint: { } hint } && _urls.GetValueOrDefault(hint) is { } url && url != target)
            {
                _leader = url;
                continue;
            }
            ForgetLeader(target);
            await BackoffAsync(attempt + 1, cancellationToken);
        }
        return false;
    }

    /// <summary>One request on the binary port of the member at <paramref name="baseUrl"/>; null when it cannot be reached.</summary>
    private async Task<Reply?> CallAsync(string baseUrl, ClientOp op, Guid requestId, byte[] payload, CancellationToken cancellationToken)
    {
        var pool = _pools.GetOrAdd(baseUrl, u => new ConnectionPool(u, ConnectionsPerMember));
        var connection = await pool.GetAsync(this, cancellationToken);
        return connection is null ? null : await connection.CallAsync(op, requestId, payload, RequestTimeout, cancellationToken);
    }

    /// <summary>The connections to one member's binary port (its address learnt from /status), reopened when broken.</summary>
    private sealed class ConnectionPool(string baseUrl, int size)
    {
        private readonly Task<ClientConnection?>?[] _slots = new Task<ClientConnection?>?[size];
        private readonly Lock _lock = new();
        private int _next;

        public async Task<ClientConnection?> GetAsync(RaftClusterClient owner, CancellationToken cancellationToken)
        {
            var slot = (int)((uint)Interlocked.Increment(ref _next) % (uint)_slots.Length);
            Task<ClientConnection?> task;
            lock (_lock)
            {
                var current = _slots[slot];
                if (current is null || (current.IsCompleted && (current.Result is null || current.Result.IsBroken)))
                {
                    current?.Result?.Dispose();
                    current = _slots[slot] = OpenAsync(owner, cancellationToken);
                }
                task = current;
            }
            return await task;
        }

        private async Task<ClientConnection?> OpenAsync(RaftClusterClient owner, CancellationToken cancellationToken)
        {
            await Task.Yield();
            // Asked every time: a restarted member may listen on another port.
            if (await owner.GetAsync(baseUrl + "/status", cancellationToken) is not { } text
                || NodeStatus.Parse(text).Client is not { Length: > 0 } address)
            {
                return null;
            }
            return await ClientConnection.ConnectAsync(IPEndPoint.Parse(address), cancellationToken);
        }
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

    public override async Task<bool> AllCaughtUpAsync(TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long target = -1;
        while (clock.Elapsed < timeout)
        {
            var statuses = await Task.WhenAll(_urls.Keys.Select(id => StatusAsync(id, CancellationToken.None)));
            if (target < 0 && statuses.FirstOrDefault(st => st is { IsLeader: true }) is { } leader)
            {
                target = leader.Commit;
            }
            if (target >= 0 && statuses.All(st => st is not null && st.Applied >= target))
            {
                return true;
            }
            await Task.Delay(20);
        }
        return false;
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
internal sealed record NodeStatus(string Id, string Leader, long Term, bool IsLeader, long Commit, long Applied, long Count, string? Client)
{
    public static NodeStatus Parse(string text)
    {
        var fields = text.Trim().Split(' ').Select(f => f.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);
        return new NodeStatus(fields["id"], fields["leader"], long.Parse(fields["term"], System.Globalization.CultureInfo.InvariantCulture),
            fields["isleader"] == "true", long.Parse(fields["commit"], System.Globalization.CultureInfo.InvariantCulture),
            long.Parse(fields["applied"], System.Globalization.CultureInfo.InvariantCulture), long.Parse(fields["count"], System.Globalization.CultureInfo.InvariantCulture),
            fields.GetValueOrDefault("client"));
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
        var key = Encoding.ASCII.GetBytes("k/" + requestId.ToString("N"));
        if (UseJsonGateway)
        {
            var body = "{\"key\":\"" + Convert.ToBase64String(key) + "\",\"value\":\"" + Convert.ToBase64String(payload) + "\"}";
            return await CallAsync("/v3/kv/put", body, cancellationToken);
        }
        // etcdserverpb.PutRequest: key = 1, value = 2 (both bytes).
        return await CallGrpcAsync(EtcdPut, [.. Field(1, key), .. Field(2, payload)], cancellationToken);
    }

    public override Task<bool> ReadAsync(CancellationToken cancellationToken) =>
        UseJsonGateway
            ? CallAsync("/v3/kv/range", "{\"key\":\"" + Convert.ToBase64String("k/read"u8) + "\"}", cancellationToken)
            // etcdserverpb.RangeRequest: key = 1; serializable (7) left false, so the read is linearizable.
            : CallGrpcAsync(EtcdRange, Field(1, "k/read"u8.ToArray()), cancellationToken);

    /// <summary>Puts and reads through etcd's HTTP/JSON gateway instead of its gRPC API (the gateway costs etcd a
    /// JSON translation and an internal gRPC call per request; the harness used it before 2026-11-26).</summary>
    public bool UseJsonGateway { get; init; }

    private static readonly Marshaller<byte[]> Raw = Marshallers.Create(b => b, b => b);
    private static readonly Method<byte[], byte[]> EtcdPut = new(MethodType.Unary, "etcdserverpb.KV", "Put", Raw, Raw);
    private static readonly Method<byte[], byte[]> EtcdRange = new(MethodType.Unary, "etcdserverpb.KV", "Range", Raw, Raw);
    private readonly ConcurrentDictionary<string, CallInvoker> _invokers = new(StringComparer.Ordinal);

    // One length-delimited protobuf field (wire type 2); etcd's requests need nothing else, so no generated code.
    private static byte[] Field(int number, byte[] value)
    {
        var bytes = new List<byte>(value.Length + 6) { (byte)((number << 3) | 2) };
        for (var v = (uint)value.Length; ; v >>= 7)
        {
            if (v < 0x80)
            {
                bytes.Add((byte)v);
                break;
            }
            bytes.Add((byte)(v | 0x80));
        }
        bytes.AddRange(value);
        return [.. bytes];
    }

    /// <summary>One gRPC call on etcd's client port (one HTTP/2 connection per member, as clientv3 keeps), retried across members.</summary>
    private async Task<bool> CallGrpcAsync(Method<byte[], byte[]> method, byte[] request, CancellationToken cancellationToken)
    {
        for (var attempt = 0; !cancellationToken.IsCancellationRequested; attempt++)
        {
            var index = Volatile.Read(ref _preferred);
            var url = members[index % members.Count].Value.TrimEnd('/');
            var invoker = _invokers.GetOrAdd(url, u => GrpcChannel.ForAddress(u, new GrpcChannelOptions
            {
                HttpHandler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(1), PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan },
            }).CreateCallInvoker());
            try
            {
                using var call = invoker.AsyncUnaryCall(method, null, new CallOptions(deadline: DateTime.UtcNow + RequestTimeout, cancellationToken: cancellationToken), request);
                await call.ResponseAsync;
                return true;
            }
            catch (RpcException)
            {
            }
            Interlocked.CompareExchange(ref _preferred, index + 1, index);
            await BackoffAsync(attempt + 1, cancellationToken);
        }
        return false;
    }

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

    public override async Task<bool> AllCaughtUpAsync(TimeSpan timeout)
    {
        // maintenance/status reports each member's raftIndex (its commit index); wait until all reach the highest seen first.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long target = -1;
        while (clock.Elapsed < timeout)
        {
            var indexes = await Task.WhenAll(members.Select(m => RaftIndexAsync(m.Value)));
            if (target < 0 && indexes.All(i => i >= 0))
            {
                target = indexes.Max();
            }
            if (target >= 0 && indexes.All(i => i >= target))
            {
                return true;
            }
            await Task.Delay(20);
        }
        return false;
    }

    private async Task<long> RaftIndexAsync(string url)
    {
        try
        {
            using var content = new StringContent("{}", Encoding.UTF8, "application/json");
            using var response = await Http.PostAsync(url.TrimEnd('/') + "/v3/maintenance/status", content);
            using var doc = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return doc.RootElement.TryGetProperty("raftIndex", out var i) && long.TryParse(i.GetString(), System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : -1;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException or System.Text.Json.JsonException or InvalidOperationException)
        {
            return -1;
        }
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
