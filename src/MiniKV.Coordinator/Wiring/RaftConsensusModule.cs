using MiniKV.Consensus;
using MiniKV.Consensus.Grpc;
using MiniKV.Consensus.Hosting;
using MiniKV.Consensus.Storage;

namespace MiniKV.Coordinator.Wiring;

/// <summary>
/// The production consensus engine of a coordinator: <see cref="RaftHost"/> over <see cref="FileRaftStorage"/> in
/// <c>--db/raft</c> and <see cref="GrpcRaftTransport"/> served on the coordinator's --grpc port.
/// </summary>
/// <remarks>
/// Founding a cluster needs every founding member's id, but --peers names only addresses, so a coordinator whose
/// Raft log is empty first asks each peer's id (Hello) and waits until all have answered — every founding member
/// then starts with the same voters: itself and the ids behind --peers (what etcd's --initial-cluster says
/// explicitly). A coordinator with a log already knows the membership from it and starts at once; it keeps asking
/// its peers in the background only to learn where they are now. The server listens meanwhile (its peers need its
/// Hello answered), answering 503 until a leader is known.
/// </remarks>
internal sealed partial class RaftConsensusModule : IConsensusModule
{
    private static readonly TimeSpan HelloRound = TimeSpan.FromSeconds(2);

    private readonly ConsensusContext _context;
    private readonly DeferredConsensus _consensus;
    private readonly GrpcRaftTransport _transport;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly string _raftDirectory;
    private Task _starting = Task.CompletedTask;
    private RaftHost? _host;

    public RaftConsensusModule(ConsensusContext context)
    {
        _context = context;
        _consensus = new DeferredConsensus(context.Options.Id);
        _transport = new GrpcRaftTransport(context.Options.Id, logger: context.LoggerFactory.CreateLogger<GrpcRaftTransport>());
        _logger = context.LoggerFactory.CreateLogger<RaftConsensusModule>();
        _raftDirectory = Path.Combine(context.Options.DbDirectory, "raft");
    }

    public IConsensus Consensus => _consensus;

    /// <summary>The running host's status (null until it started), for /metrics and /admin/status.</summary>
    public RaftStatus? Status => _host?.Status;

    public void ConfigureServices(IServiceCollection services) => services.AddRaftTransport(_transport);

    public void MapEndpoints(IEndpointRouteBuilder endpoints) => endpoints.MapRaftTransport();

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_raftDirectory);
        var peers = _context.Options.Peers;
        if (HasLog())
        {
            StartHost(initialMembers: null);
            _starting = Task.WhenAll(peers.Select(p => LearnPeerAsync(p, _stop.Token)));
        }
        else
        {
            _starting = FoundAsync(peers, _stop.Token);
        }
        return Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _starting;
        }
        catch (OperationCanceledException)
        {
        }
        if (_host != null)
        {
            await _host.DisposeAsync();
        }
        await _transport.DisposeAsync();
        _stop.Dispose();
    }

    private bool HasLog() =>
        Directory.EnumerateFiles(_raftDirectory, "*" + FileRaftStorage.SegmentExtension).Any();

    private async Task FoundAsync(IReadOnlyList<string> peers, CancellationToken cancellationToken)
    {
        var ids = new Dictionary<string, string>(StringComparer.Ordinal);
        while (ids.Count < peers.Distinct(StringComparer.Ordinal).Count())
        {
            var answered = await _transport.DiscoverPeersAsync(peers, HelloRound, cancellationToken);
            foreach (var (address, id) in answered)
            {
                ids[address] = id;
            }
            var missing = peers.Where(p => !ids.ContainsKey(p)).ToArray();
            if (missing.Length > 0)
            {
                LogWaitingForPeers(_logger, missing);
            }
        }
        var voters = ids.Values.Append(_context.Options.Id).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        LogFounding(_logger, voters);
        StartHost(new ConfState(voters, []));
    }

    private async Task LearnPeerAsync(string address, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            var answered = await _transport.DiscoverPeersAsync([address], HelloRound, cancellationToken);
            if (answered.Count > 0)
            {
                return;
            }
        }
    }

    private void StartHost(ConfState? initialMembers)
    {
        var options = _context.Options;
        var host = new RaftHost(
            new RaftHostOptions
            {
                NodeId = options.Id,
                InitialMembers = initialMembers,
                ElectionTimeoutMin = TimeSpan.FromMilliseconds(options.ElectionTimeoutMinMs),
                ElectionTimeoutMax = TimeSpan.FromMilliseconds(options.ElectionTimeoutMaxMs),
                SnapshotStagingDirectory = _raftDirectory,
            },
            new FileRaftStorage(_raftDirectory),
            _transport,
            _context.StateMachine);
        _transport.Handler = host;
        // A broken stream from the leader lets a follower campaign within a heartbeat interval or so instead of a
        // whole election timeout (RaftNode.ReportLeaderUnreachable).
        _transport.PeerUnreachable += host.ReportUnreachable;
        _host = host;
        _consensus.Attach(host);
        host.Start();
        _ = host.Stopped.ContinueWith(t => ExitIfFailed(t.Result), TaskScheduler.Default);
    }

    /// <summary>
    /// A coordinator whose Raft loop died would stay up as a member that neither votes nor replicates, which costs the
    /// cluster its fault tolerance without anyone noticing. Crash instead, loudly: a supervisor (or the operator)
    /// restarts it, and it recovers from its durable log and metadata.
    /// </summary>
    private void ExitIfFailed(Exception? fault)
    {
        if (fault is null)
        {
            return;
        }
        LogRaftFailed(_logger, fault);
        Environment.Exit(70);
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "the Raft loop failed; exiting so that a restart recovers this coordinator")]
    private static partial void LogRaftFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "waiting for peers to answer Hello: {Peers}")]
    private static partial void LogWaitingForPeers(ILogger logger, string[] peers);

    [LoggerMessage(Level = LogLevel.Information, Message = "founding the cluster with voters {Voters}")]
    private static partial void LogFounding(ILogger logger, string[] voters);
}
