using System.Collections.Concurrent;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MiniKV.Protocol.V1;
using MiniKV.Storage;
using MiniKV.Volume.Grpc;

namespace MiniKV.Volume.Cluster;

/// <summary>The coordinator a volume talks to: its id and gRPC address (host:port or URL).</summary>
public sealed record LeaderInfo(string Id, string GrpcAddress);

/// <summary>
/// Keeps a volume registered with the leading coordinator (docs/volume.md, "Registration"):
/// <list type="number">
/// <item>find the leader: GET <c>{url}/admin/status</c> of each <c>--coordinators</c> URL, read <c>leader</c>
/// (a coordinator id) and that coordinator's <c>grpc</c> address from <c>coordinators[]</c>;</item>
/// <item><c>Join</c> it over gRPC; a <c>not_leader</c> answer names the leader in its hint, which is followed;</item>
/// <item>resolve the transactions that were prepared and undecided when the volume started, with
/// <c>TransactionOutcome</c> (committed → Commit, aborted → Abort, unknown → left for the engine's expiry);</item>
/// <item><c>Heartbeat</c> every interval (1 s by default); every 10 s (at most half of --prepared-expiry), ask
/// again about prepares older than 30 s (at most half of --prepared-expiry). A prepare older than
/// --prepared-expiry that the leader still calls unknown is aborted: it expires only when no coordinator knows it.</item>
/// </list>
/// Any failure drops back to discovery after an exponential backoff (100 ms to 5 s, jittered); reads and
/// writes are served all along. Thread-safety: the loop runs on one task; the properties may be read from any thread.
/// </summary>
internal sealed class CoordinatorLink : IAsyncDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(3);
    private const int OutcomeBatch = 1000;
    private const int MaxCorruptKeysPerHeartbeat = 1000;

    private readonly VolumeNode _node;
    private readonly ILogger _logger;
    private readonly HttpClient _http;
    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<TxId> _undecidedAtStart;
    private Task _loop = Task.CompletedTask;
    private volatile LeaderInfo? _leader;
    private volatile string _lastProblem = "registration has not started";
    private volatile string _step = "not started";
    private long _stepSinceTicks = Environment.TickCount64;
    private long _lastContactTicks;
    private long _heartbeats;
    private TimeSpan _interval;
    private readonly TimeSpan _outcomeCheckPeriod;
    private readonly TimeSpan _outcomeCheckAge;
    private bool _joined;

    public CoordinatorLink(VolumeNode node, IReadOnlyList<PreparedTransaction> undecidedAtStart, ILogger logger)
    {
        _node = node;
        _logger = logger;
        _interval = node.Options.HeartbeatInterval;
        _http = new HttpClient { Timeout = CallTimeout };
        var expiry = node.Options.PreparedExpiry;
        _outcomeCheckPeriod = expiry > TimeSpan.Zero && expiry / 2 < TimeSpan.FromSeconds(10) ? expiry / 2 : TimeSpan.FromSeconds(10);
        _outcomeCheckAge = expiry > TimeSpan.Zero && expiry / 2 < TimeSpan.FromSeconds(30) ? expiry / 2 : TimeSpan.FromSeconds(30);
        _undecidedAtStart = [];
        foreach (var p in undecidedAtStart)
        {
            _undecidedAtStart.Add(p.Id);
        }
    }

    /// <summary>True while the volume is joined and the leader answered within the last three heartbeat intervals.</summary>
    public bool Registered =>
        Volatile.Read(ref _joined) && Environment.TickCount64 - Interlocked.Read(ref _lastContactTicks) < Math.Max(3 * _interval.TotalMilliseconds, 3000);

    public LeaderInfo? Leader => _leader;

    public string LastProblem => _lastProblem;

    /// <summary>What the link is doing right now and for how long, so a stuck link says where it is stuck.</summary>
    public string CurrentStep => $"{_step} for {(Environment.TickCount64 - Interlocked.Read(ref _stepSinceTicks)) / 1000.0:0.0} s";

    /// <summary>Heartbeats the leader accepted since start.</summary>
    public long Heartbeats => Interlocked.Read(ref _heartbeats);

    /// <summary>Transactions prepared at start that still await an answer from the coordinators.</summary>
    public int UndecidedAtStart
    {
        get
        {
            lock (_undecidedAtStart)
            {
                return _undecidedAtStart.Count;
            }
        }
    }

    public void Start() => _loop = Task.Run(() => RunAsync(_stop.Token));

    private async Task RunAsync(CancellationToken stop)
    {
        var failures = 0;
        var lastOutcomeCheck = Environment.TickCount64;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                Step("finding the leader");
                var leader = _leader ??= await DiscoverAsync(stop);
                if (leader == null)
                {
                    await BackoffAsync(++failures, stop);
                    continue;
                }
                var client = new Coordinator.CoordinatorClient(Channel(leader.GrpcAddress));
                if (!Volatile.Read(ref _joined))
                {
                    Step($"joining {leader.Id} at {leader.GrpcAddress}");
                    var joined = await client.JoinAsync(JoinRequest(), deadline: Deadline(), cancellationToken: stop);
                    if (joined.NotLeader)
                    {
                        Follow(joined.Leader, leader);
                        await BackoffAsync(++failures, stop);
                        continue;
                    }
                    if (joined.HeartbeatIntervalMs > 0)
                    {
                        _interval = TimeSpan.FromMilliseconds(joined.HeartbeatIntervalMs);
                    }
                    Contact();
                    Volatile.Write(ref _joined, true);
                    Log.Registered(_logger, leader.Id, leader.GrpcAddress);
                }
                if (UndecidedAtStart > 0)
                {
                    List<TxId> asking;
                    lock (_undecidedAtStart)
                    {
                        asking = [.. _undecidedAtStart];
                    }
                    Step($"resolving {asking.Count} transactions undecided at start with {leader.Id}");
                    if (!await ResolveAsync(client, leader, asking, stop))
                    {
                        continue;
                    }
                    lock (_undecidedAtStart)
                    {
                        _undecidedAtStart.Clear();
                    }
                }
                Step($"heartbeating {leader.Id}");
                var beat = await client.HeartbeatAsync(HeartbeatRequest(), deadline: Deadline(), cancellationToken: stop);
                if (beat.NotLeader)
                {
                    Follow(beat.Leader, leader);
                    await BackoffAsync(++failures, stop);
                    continue;
                }
                if (beat.UnknownVolume)
                {
                    Log.Rejoining(_logger, leader.Id);
                    Volatile.Write(ref _joined, false);
                    continue;
                }
                Contact();
                Interlocked.Increment(ref _heartbeats);
                failures = 0;
                if (Environment.TickCount64 - lastOutcomeCheck >= _outcomeCheckPeriod.TotalMilliseconds)
                {
                    lastOutcomeCheck = Environment.TickCount64;
                    Step($"resolving old prepares with {leader.Id}");
                    await ResolveOldPreparesAsync(client, leader, stop);
                }
                Step("waiting for the next heartbeat");
                await Task.Delay(_interval, stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is RpcException or HttpRequestException or OperationCanceledException or JsonException or IOException or InvalidOperationException or UriFormatException)
            {
                _lastProblem = e is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : e.Message;
                Log.LinkProblem(_logger, _lastProblem);
                _leader = null; // find the leader again
                await BackoffAsync(++failures, stop);
            }
            catch (Exception e) when (!stop.IsCancellationRequested)
            {
                // Anything else is a bug, but the link must outlive it: a loop that died silently once left a
                // restarted volume unregistered for good, answering "registration has not started".
                _lastProblem = $"unexpected {e.GetType().Name}: {e.Message}";
                Log.LinkFailure(_logger, e);
                _leader = null;
                await BackoffAsync(++failures, stop);
            }
        }
    }

    /// <summary>Asks each coordinator URL for its status until one names a leader with a gRPC address.</summary>
    private async Task<LeaderInfo?> DiscoverAsync(CancellationToken stop)
    {
        var problems = new List<string>();
        foreach (var url in _node.Options.Coordinators)
        {
            try
            {
                var status = new Uri(new Uri(url.TrimEnd('/') + "/"), "admin/status");
                using var response = await _http.GetAsync(status, stop);
                if (!response.IsSuccessStatusCode)
                {
                    problems.Add($"{url}: HTTP {(int)response.StatusCode}");
                    continue;
                }
                using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync(stop));
                if (ParseStatus(document.RootElement) is { } leader)
                {
                    return leader;
                }
                problems.Add($"{url}: no leader with a grpc address in /admin/status");
            }
            catch (Exception e) when (!stop.IsCancellationRequested && e is HttpRequestException or JsonException or OperationCanceledException or UriFormatException or InvalidOperationException)
            {
                problems.Add($"{url}: {e.Message}");
            }
        }
        _lastProblem = problems.Count == 0 ? "no coordinators configured" : "no leader found: " + string.Join("; ", problems);
        return null;
    }

    /// <summary>Reads <c>leader</c> and <c>coordinators[].{id,grpc}</c> from a coordinator's /admin/status.</summary>
    internal static LeaderInfo? ParseStatus(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object
            || !root.TryGetProperty("leader", out var leaderElement) || leaderElement.ValueKind != JsonValueKind.String
            || leaderElement.GetString() is not { Length: > 0 } leaderId
            || !root.TryGetProperty("coordinators", out var coordinators) || coordinators.ValueKind != JsonValueKind.Array)
        {
            return null;
        }
        foreach (var c in coordinators.EnumerateArray())
        {
            if (c.ValueKind == JsonValueKind.Object
                && c.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String && id.GetString() == leaderId
                && c.TryGetProperty("grpc", out var grpc) && grpc.ValueKind == JsonValueKind.String && grpc.GetString() is { Length: > 0 } address)
            {
                return new LeaderInfo(leaderId, address);
            }
        }
        return null;
    }

    private void Follow(LeaderHint? hint, LeaderInfo asked)
    {
        if (hint is { GrpcAddress.Length: > 0 } && hint.GrpcAddress != asked.GrpcAddress)
        {
            Log.FollowingHint(_logger, asked.Id, hint.Id, hint.GrpcAddress);
            _leader = new LeaderInfo(hint.Id, hint.GrpcAddress);
            _lastProblem = $"{asked.Id} is not the leader; trying {hint.Id}";
        }
        else
        {
            _leader = null; // no usable hint: ask the coordinators' /admin/status again
            _lastProblem = $"{asked.Id} is not the leader and knows no leader yet";
        }
    }

    /// <summary>Decides the given transactions by the coordinators' outcomes. False when the leader moved (nothing decided).</summary>
    private async Task<bool> ResolveAsync(Coordinator.CoordinatorClient client, LeaderInfo leader, List<TxId> txs, CancellationToken stop)
    {
        var prepared = new Dictionary<TxId, PreparedTransaction>();
        foreach (var p in _node.Store.ListPrepared())
        {
            prepared[p.Id] = p;
        }
        // Only what is still prepared: a transaction decided meanwhile (a late Commit, a read) needs no answer.
        txs = txs.FindAll(prepared.ContainsKey);
        var expiry = _node.Options.PreparedExpiry;
        for (var start = 0; start < txs.Count; start += OutcomeBatch)
        {
            var request = new TransactionOutcomeRequest { VolumeId = _node.Options.Id };
            var count = Math.Min(OutcomeBatch, txs.Count - start);
            var id = new byte[TxId.Size];
            for (var i = start; i < start + count; i++)
            {
                txs[i].Write(id);
                request.TxIds.Add(ByteString.CopyFrom(id));
                request.Keys.Add(UnsafeByteOperations.UnsafeWrap(prepared[txs[i]].Key));
            }
            var response = await client.TransactionOutcomeAsync(request, deadline: Deadline(), cancellationToken: stop);
            if (response.NotLeader)
            {
                Follow(response.Leader, leader);
                return false;
            }
            Contact(); // the leader answered: resolving many transactions must not read as losing it
            foreach (var outcome in response.Outcomes)
            {
                if (outcome.TxId.Length != TxId.Size)
                {
                    continue;
                }
                var tx = TxId.Read(outcome.TxId.Span);
                switch (outcome.Outcome)
                {
                    case Protocol.V1.Outcome.Committed:
                        var committed = await _node.DecideAsync(tx, commit: true);
                        Log.TransactionResolved(_logger, tx.ToString(), "committed", committed.Status.ToString());
                        break;
                    case Protocol.V1.Outcome.Aborted:
                        var aborted = await _node.DecideAsync(tx, commit: false);
                        Log.TransactionResolved(_logger, tx.ToString(), "aborted", aborted.Status.ToString());
                        break;
                    case Protocol.V1.Outcome.Pending:
                        break; // still in flight at the coordinators: keep it, ask again later
                    default:
                        if (expiry > TimeSpan.Zero && prepared.TryGetValue(tx, out var p) && DateTimeOffset.UtcNow - p.PreparedAt >= expiry)
                        {
                            var expired = await _node.DecideAsync(tx, commit: false);
                            Log.TransactionResolved(_logger, tx.ToString(), "expired (no coordinator knows it)", expired.Status.ToString());
                        }
                        else
                        {
                            Log.TransactionUnknown(_logger, tx.ToString(), expiry);
                        }
                        break;
                }
            }
        }
        return true;
    }

    private async Task ResolveOldPreparesAsync(Coordinator.CoordinatorClient client, LeaderInfo leader, CancellationToken stop)
    {
        var cutoff = DateTimeOffset.UtcNow - _outcomeCheckAge;
        var old = new List<TxId>();
        foreach (var p in _node.Store.ListPrepared())
        {
            if (p.PreparedAt < cutoff)
            {
                old.Add(p.Id);
            }
        }
        if (old.Count > 0)
        {
            await ResolveAsync(client, leader, old, stop);
        }
    }

    private JoinRequest JoinRequest()
    {
        var stats = _node.Store.GetStats();
        var (free, capacity) = _node.DiskSpace();
        return new JoinRequest
        {
            VolumeId = _node.Options.Id,
            HttpAddress = "http://" + _node.AdvertisedHttp,
            GrpcAddress = _node.AdvertisedGrpc,
            CapacityBytes = capacity,
            FreeBytes = free,
            Keys = stats.Keys,
            LiveBytes = stats.LiveBytes,
        };
    }

    private HeartbeatRequest HeartbeatRequest()
    {
        var stats = _node.Store.GetStats();
        var (free, capacity) = _node.DiskSpace();
        var corrupt = _node.CorruptKeys(MaxCorruptKeysPerHeartbeat);
        var problem = _node.StorageProblem();
        var request = new HeartbeatRequest
        {
            VolumeId = _node.Options.Id,
            Health = problem != null ? Health.Failed : corrupt.Count > 0 || (capacity > 0 && free < capacity / 100) ? Health.Degraded : Health.Ok,
            HealthDetail = problem ?? (corrupt.Count > 0 ? $"{corrupt.Count} corrupt keys" : capacity > 0 && free < capacity / 100 ? "less than 1% free space" : ""),
            Keys = stats.Keys,
            LiveBytes = stats.LiveBytes,
            DiskBytes = stats.DiskBytes,
            FreeBytes = free,
            CapacityBytes = capacity,
            CorruptRecords = stats.CorruptRecords,
            PreparedTransactions = stats.PreparedTransactions,
            HttpAddress = "http://" + _node.AdvertisedHttp,
            GrpcAddress = _node.AdvertisedGrpc,
        };
        foreach (var key in corrupt)
        {
            request.CorruptKeys.Add(new CorruptKey { Key = ByteString.CopyFrom(key) });
        }
        return request;
    }

    private GrpcChannel Channel(string address) => _channels.GetOrAdd(address, static a => GrpcChannel.ForAddress(PeerChannels.ToUri(a)));

    private void Step(string step)
    {
        _step = step;
        Interlocked.Exchange(ref _stepSinceTicks, Environment.TickCount64);
    }

    private void Contact() => Interlocked.Exchange(ref _lastContactTicks, Environment.TickCount64);

    private static DateTime Deadline() => DateTime.UtcNow + CallTimeout;

    private Task BackoffAsync(int failures, CancellationToken stop)
    {
        var ceiling = Math.Min(5000, 100 * Math.Pow(2, Math.Min(failures - 1, 10)));
        var delay = TimeSpan.FromMilliseconds(ceiling * (0.5 + (Random.Shared.NextDouble() / 2)));
        Step($"waiting {delay.TotalMilliseconds:0} ms to retry (failure {failures})");
        return Task.Delay(delay, stop);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (OperationCanceledException)
        {
        }
        _http.Dispose();
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }
        _stop.Dispose();
    }
}
