using System.Globalization;
using System.Net;
using MiniKV.Testing.Cluster;

namespace MiniKV.Workloads.Tests.Support;

/// <summary>A node of a <see cref="ProxiedCluster"/> with the proxies that lead to it (their targets follow its ports across restarts).</summary>
public sealed class ClusterMember(NodeProcess process, bool isCoordinator, TcpFaultProxy http, IReadOnlyList<TcpFaultProxy> grpc)
{
    public NodeProcess Process { get; } = process;
    public string Name => Process.Name;
    public bool IsCoordinator { get; } = isCoordinator;

    /// <summary>Every client (tests, volumes, forwarding coordinators) reaches this node's HTTP port through this proxy.</summary>
    public TcpFaultProxy HttpProxy { get; } = http;

    /// <summary>The proxies in front of the gRPC port: one per peer coordinator plus one for volumes (coordinators), or one shared by all coordinators (volumes).</summary>
    public IReadOnlyList<TcpFaultProxy> GrpcProxies { get; } = grpc;

    public Uri Url => new("http://" + HttpProxy.Endpoint);

    /// <summary>Points the proxies at the ports of the current life (known once the node prints its serving line).</summary>
    public async Task FollowPortsAsync(TimeSpan timeout)
    {
        var (httpEndpoint, grpcEndpoint) = await Process.WaitForServingAsync(timeout);
        HttpProxy.Target = httpEndpoint;
        foreach (var proxy in GrpcProxies)
        {
            proxy.Target = grpcEndpoint;
        }
    }
}

/// <summary>
/// Three coordinators and three volumes as real processes bound to loopback port 0, every connection between them
/// (and from clients) dialed through a <see cref="TcpFaultProxy"/>. Each directed coordinator-to-coordinator Raft
/// link has its own proxy, so the nemesis can partition any split of coordinators; the proxies also give every node
/// a stable address, which the servers advertise, while its real port changes with every restart.
/// </summary>
public sealed class ProxiedCluster : IAsyncDisposable
{
    public static readonly TimeSpan ServingTimeout = TimeSpan.FromSeconds(180);
    public static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(180);

    private readonly List<TcpFaultProxy> _proxies;
    private readonly HttpClient _probe = new() { Timeout = TimeSpan.FromSeconds(5) };

    private ProxiedCluster(string root, List<ClusterMember> coordinators, List<ClusterMember> volumes, List<NemesisLink> raftLinks, List<TcpFaultProxy> proxies)
    {
        Root = root;
        Coordinators = coordinators;
        Volumes = volumes;
        RaftLinks = raftLinks;
        _proxies = proxies;
    }

    public string Root { get; }
    public IReadOnlyList<ClusterMember> Coordinators { get; }
    public IReadOnlyList<ClusterMember> Volumes { get; }
    public IEnumerable<ClusterMember> All => Coordinators.Concat(Volumes);

    /// <summary>The six directed Raft links between coordinators, for partitions.</summary>
    public IReadOnlyList<NemesisLink> RaftLinks { get; }

    public ClusterMember Member(NodeProcess process) => All.Single(m => m.Process == process);

    public static async Task<ProxiedCluster> StartAsync(string root, Action<string> log)
    {
        Directory.CreateDirectory(root);
        var proxies = new List<TcpFaultProxy>();
        TcpFaultProxy Proxy(string name)
        {
            var proxy = new TcpFaultProxy(name);
            proxies.Add(proxy);
            return proxy;
        }
        string Address(TcpFaultProxy p) => "127.0.0.1:" + p.Endpoint.Port.ToString(CultureInfo.InvariantCulture);

        var names = new[] { "coord-1", "coord-2", "coord-3" };
        var coordHttp = names.ToDictionary(n => n, n => Proxy($"clients->{n}"));
        var raft = new List<NemesisLink>();
        foreach (var from in names)
        {
            foreach (var to in names.Where(t => t != from))
            {
                raft.Add(new NemesisLink(from, to, Proxy($"{from}->{to}")));
            }
        }
        var volumesToCoord = names.ToDictionary(n => n, n => Proxy($"volumes->{n}"));

        var coordinators = new List<ClusterMember>();
        foreach (var name in names)
        {
            var peers = raft.Where(l => l.From == name).Select(l => Address(l.Proxy));
            var process = NodeProcess.ForDll(name, "minikv-coord.dll",
                "serve", "--id", name, "--bind", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--db", Path.Combine(root, name),
                "--peers", string.Join(',', peers), "--advertise-bind", Address(coordHttp[name]), "--advertise-grpc", Address(volumesToCoord[name]),
                "--replicas", "3", "--min-replicas", "2", "--max-value-size", "16MiB");
            var grpc = raft.Where(l => l.To == name).Select(l => l.Proxy).Append(volumesToCoord[name]).ToList();
            coordinators.Add(new ClusterMember(process, true, coordHttp[name], grpc));
        }
        var coordinatorUrls = string.Join(',', names.Select(n => "http://" + Address(coordHttp[n])));
        var volumes = new List<ClusterMember>();
        foreach (var name in new[] { "vol-1", "vol-2", "vol-3" })
        {
            var http = Proxy($"clients->{name}");
            var grpc = Proxy($"coordinators->{name}");
            var process = NodeProcess.ForDll(name, "minikv-volume.dll",
                "serve", "--id", name, "--bind", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
                "--data", Path.Combine(root, name, "data"), "--wal", Path.Combine(root, name, "wal"),
                "--coordinators", coordinatorUrls, "--advertise-bind", Address(http), "--advertise-grpc", Address(grpc));
            volumes.Add(new ClusterMember(process, false, http, [grpc]));
        }
        var cluster = new ProxiedCluster(root, coordinators, volumes, raft, proxies);
        log($"cluster in {root}; clients reach " + string.Join(", ", coordinators.Select(c => $"{c.Name} at {c.Url}")));
        try
        {
            foreach (var member in cluster.All)
            {
                member.Process.Launch();
            }
            await Task.WhenAll(cluster.All.Select(m => m.FollowPortsAsync(ServingTimeout)));
            await cluster.WaitReadyAsync(ReadyTimeout);
        }
        catch
        {
            log(cluster.Dump());
            await cluster.DisposeAsync();
            throw;
        }
        return cluster;
    }

    /// <summary>The nemesis's restart hook: the restarted node's proxies follow its new ports.</summary>
    public Task AfterRestartAsync(NodeProcess process) => Member(process).FollowPortsAsync(ServingTimeout);

    /// <summary>SIGKILL of all six processes at once, then all started again on their data (returns once they serve; readiness is the caller's wait).</summary>
    public async Task KillAndRestartAllAsync()
    {
        foreach (var member in All)
        {
            member.Process.Kill();
        }
        foreach (var member in All)
        {
            member.Process.Launch();
        }
        await Task.WhenAll(All.Select(m => m.FollowPortsAsync(ServingTimeout)));
    }

    /// <summary>Waits until every node answers 200 on /health/ready through its proxy; a timeout names each laggard's last answer.</summary>
    public async Task WaitReadyAsync(TimeSpan timeout)
    {
        var pending = All.ToDictionary(m => m, _ => "no answer yet");
        await Eventually.TrueAsync(async () =>
        {
            foreach (var member in pending.Keys.ToList())
            {
                if (!member.Process.IsRunning)
                {
                    throw new InvalidOperationException($"{member.Name} exited before it was ready:\n{member.Process.Tail()}");
                }
                var (ready, answer) = await ProbeReadyAsync(member);
                if (ready)
                {
                    pending.Remove(member);
                }
                else
                {
                    pending[member] = answer;
                }
            }
            return pending.Count == 0;
        }, timeout, () => "not ready: " + string.Join("; ", pending.Select(p => $"{p.Key.Name}: {p.Value}")), "/health/ready on every node");
    }

    private async Task<(bool Ready, string Answer)> ProbeReadyAsync(ClusterMember member)
    {
        try
        {
            using var response = await _probe.GetAsync(new Uri(member.Url, "/health/ready"));
            var body = await response.Content.ReadAsStringAsync();
            return (response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode} {body[..Math.Min(body.Length, 400)]}");
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            return (false, e.GetType().Name);
        }
    }

    /// <summary>The last lines of every node's output, for failure messages.</summary>
    public string Dump(int lines = 60) => string.Join('\n', All.Select(m => $"===== {m.Name} (running: {m.Process.IsRunning}, lives: {m.Process.Lives}) =====\n{m.Process.Tail(lines)}"));

    public async ValueTask DisposeAsync()
    {
        foreach (var member in All)
        {
            member.Process.Dispose();
        }
        foreach (var proxy in _proxies)
        {
            await proxy.DisposeAsync();
        }
        _probe.Dispose();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temporary directory is not worth failing a run over.
        }
    }
}
