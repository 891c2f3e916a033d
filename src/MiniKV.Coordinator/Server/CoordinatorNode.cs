using System.Collections.Concurrent;
using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Operations.Jobs;
using MiniKV.Coordinator.Placement;

namespace MiniKV.Coordinator.Server;

/// <summary>
/// The coordinator's logic, independent of HTTP and gRPC: leadership readiness, version assignment, the two-phase
/// write path, the read gate, volume registration and health, transaction outcomes. One per server.
/// Thread-safety: every public member may be called concurrently.
/// </summary>
public sealed partial class CoordinatorNode : IAsyncDisposable
{
    private readonly ILogger _logger;
    private readonly ProposalBatcher _batcher;
    private readonly ReadBarrierBatcher _readBarriers;
    private readonly ReadBarrierBatcher _clientReadBarriers;
    private readonly KeyLocks _keyLocks = new();
    private readonly SemaphoreSlim _mapLock = new(1, 1);
    private readonly ConcurrentDictionary<Guid, long> _inFlight = new();
    /// <summary>Phase two of committed writes, still running after their answers: see <see cref="CommitInBackgroundAsync"/>.</summary>
    private readonly ConcurrentDictionary<Guid, Task> _committing = new();
    private readonly ConcurrentDictionary<string, byte> _stateProposals = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly AddressAnnouncer _announcer;
    private Task _leaderLoop = Task.CompletedTask;
    private long _readyTerm = -1;
    private long _lastAssignedVersion;
    private int _disposed;

    public CoordinatorNode(CoordinatorServerOptions options, IConsensus consensus, MetadataStateMachine stateMachine, IVolumeOperations volumes, ILogger logger)
    {
        Options = options;
        Consensus = consensus;
        StateMachine = stateMachine;
        Volumes = volumes;
        _logger = logger;
        _announcer = new AddressAnnouncer(this);
        Tracker = new VolumeTracker(options.VolumeDownAfter);
        _batcher = new ProposalBatcher(consensus, options.ProposalTimeout);
        _readBarriers = new ReadBarrierBatcher(consensus);
        _clientReadBarriers = new ReadBarrierBatcher(consensus.ReadBarrierOnAnyMemberAsync);
        Consensus.LeaderChanged += OnLeaderChanged;
        Jobs = new JobRegistry(consensus);
    }

    public CoordinatorServerOptions Options { get; }
    public IConsensus Consensus { get; }
    public MetadataStateMachine StateMachine { get; }
    public IVolumeOperations Volumes { get; }
    public VolumeTracker Tracker { get; }
    public CoordinatorMetrics Metrics { get; } = new();

    /// <summary>The admin jobs this node runs while it leads (Operations/Jobs).</summary>
    public JobRegistry Jobs { get; }

    /// <summary>This node's public HTTP base URL (http://host:port), set once the server listens.</summary>
    public string AdvertisedHttp { get; set; } = "";

    /// <summary>This node's gRPC address (host:port), set once the server listens.</summary>
    public string AdvertisedGrpc { get; set; } = "";

    /// <summary>Raft proposals carrying writes, and the writes they carried.</summary>
    public (long Proposals, long Writes) BatchCounters => _batcher.Counters;

    /// <summary>ReadIndex rounds started for linearizable client reads, and the reads they answered.</summary>
    public (long Rounds, long Reads) ReadBarrierCounters => _clientReadBarriers.Counters;

    /// <summary>
    /// The leader's read barrier: true once this node's state includes everything committed when the call was made,
    /// confirmed by a quorum; false on a follower. Concurrent callers share ReadIndex rounds (<see cref="ReadBarrierBatcher"/>).
    /// </summary>
    public Task<bool> ReadBarrierAsync(CancellationToken cancellationToken) => _readBarriers.WaitAsync(cancellationToken);

    /// <summary>
    /// The barrier of linearizable client reads: as <see cref="ReadBarrierAsync"/>, but a follower passes it too by
    /// asking the leader for the read index. Its own rounds: a follower round cut short by a leader change can take
    /// the Raft host's request timeout to end, and a newly elected leader's first barrier (before it takes writes)
    /// must not queue behind it.
    /// </summary>
    public Task<bool> ClientReadBarrierAsync(CancellationToken cancellationToken) => _clientReadBarriers.WaitAsync(cancellationToken);

    /// <summary>True when this node leads and has applied every entry of earlier terms (so it may answer for them).</summary>
    public bool IsReadyLeader => Consensus.Leader is { IsLeader: true } leader && Volatile.Read(ref _readyTerm) == leader.Term;

    public void Start() => _leaderLoop = Task.Run(() => LeaderLoopAsync(_stop.Token));

    private void OnLeaderChanged(LeaderInfo leader)
    {
        // Every change of leader or term, so an operator can follow a failover across the coordinators' logs.
        if (leader.IsLeader)
        {
            Log.BecameLeader(_logger, leader.Term);
        }
        else if (leader.LeaderId is { } id)
        {
            Log.FollowsLeader(_logger, leader.Term, id);
        }
        else
        {
            Log.NoLeader(_logger, leader.Term);
        }

        if (leader.IsLeader)
        {
            Tracker.StartGrace();
            _ = Task.Run(async () =>
            {
                try
                {
                    await EnsureLeaderReadyAsync(_stop.Token);
                }
                catch (OperationCanceledException)
                {
                }
            });
        }
    }

    /// <summary>
    /// The current term when this node leads and its state includes every entry of earlier terms (one read barrier
    /// per term); null otherwise. Writes begin in that term; outcomes of earlier terms are final from then on.
    /// </summary>
    public async Task<long?> EnsureLeaderReadyAsync(CancellationToken cancellationToken)
    {
        var leader = Consensus.Leader;
        if (!leader.IsLeader)
        {
            return null;
        }
        if (Volatile.Read(ref _readyTerm) == leader.Term)
        {
            return leader.Term;
        }
        if (!await ReadBarrierAsync(cancellationToken) || Consensus.Leader.Term != leader.Term || !Consensus.Leader.IsLeader)
        {
            return null;
        }
        if (Interlocked.Exchange(ref _readyTerm, leader.Term) != leader.Term)
        {
            foreach (var (tx, term) in _inFlight)
            {
                if (term < leader.Term)
                {
                    _inFlight.TryRemove(tx, out _); // decided by now: committed in the state, or can never commit
                }
            }
            await AnnounceAsync(cancellationToken);
        }
        return leader.Term;
    }

    /// <summary>Records this node's addresses in the Raft state, so followers can forward to it and volumes find it.</summary>
    private Task AnnounceAsync(CancellationToken cancellationToken) =>
        RecordAddressesAsync(Consensus.NodeId, AdvertisedHttp, AdvertisedGrpc, cancellationToken);

    /// <summary>Proposes a coordinator's addresses unless the state already has them (on the leader; followers ask it
    /// through Announce).</summary>
    internal async Task RecordAddressesAsync(string coordinatorId, string http, string grpc, CancellationToken cancellationToken)
    {
        if (StateMachine.Registry.Coordinators.TryGetValue(coordinatorId, out var known)
            && known.HttpAddress == http && known.GrpcAddress == grpc)
        {
            return;
        }
        await ProposeAsync(new CoordinatorAddressesCommand(coordinatorId, http, grpc), cancellationToken);
    }

    internal async Task<ProposalResult> ProposeAsync(MetadataCommand command, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Options.ProposalTimeout);
        try
        {
            return await Consensus.ProposeAsync(CommandCodec.Encode(command), Guid.NewGuid(), timeout.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new ProposalResult(ProposalStatus.Unknown, 0, null, null);
        }
    }

    /// <summary>The leader's public HTTP base URL as the Raft state knows it, or null.</summary>
    public Uri? LeaderHttp()
    {
        var leader = Consensus.Leader;
        if (leader.LeaderId is { } id && StateMachine.Registry.Coordinators.TryGetValue(id, out var c)
            && Uri.TryCreate(c.HttpAddress, UriKind.Absolute, out var uri))
        {
            return uri;
        }
        return null;
    }

    /// <summary>A version above every version this node has seen assigned or applied.</summary>
    private ulong NextVersion()
    {
        while (true)
        {
            var last = Volatile.Read(ref _lastAssignedVersion);
            var next = (long)Math.Max((ulong)last, StateMachine.LastVersion) + 1;
            if (Interlocked.CompareExchange(ref _lastAssignedVersion, next, last) == last)
            {
                return (ulong)next;
            }
        }
    }

    private async Task LeaderLoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(500), stop);
                if (await EnsureLeaderReadyAsync(stop) == null)
                {
                    await _announcer.AnnounceIfNeededAsync(stop);
                    continue;
                }
                foreach (var volume in StateMachine.Registry.Volumes.Values)
                {
                    if (volume.State == VolumeState.Up && Tracker.IsSilent(volume))
                    {
                        Log.VolumeDown(_logger, volume.Id, Options.VolumeDownAfter);
                        ProposeVolumeState(volume.Id, VolumeState.Down);
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is InvalidOperationException or IOException)
            {
                Log.LeaderLoopProblem(_logger, e.Message);
            }
        }
    }

    /// <summary>Proposes a volume state change in the background, at most one at a time per volume.</summary>
    internal void ProposeVolumeState(string volumeId, VolumeState state)
    {
        if (!_stateProposals.TryAdd(volumeId, 0))
        {
            return;
        }
        _ = Task.Run(async () =>
        {
            try
            {
                await ProposeAsync(new SetVolumeStateCommand(volumeId, state, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()), _stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
            finally
            {
                _stateProposals.TryRemove(volumeId, out _);
            }
        });
    }

    /// <summary>Builds the shard map over the healthy volumes when the first write arrives. False when too few volumes exist.</summary>
    private async Task<bool> EnsureShardMapAsync(CancellationToken cancellationToken)
    {
        if (StateMachine.Registry.HasShardMap)
        {
            return true;
        }
        await _mapLock.WaitAsync(cancellationToken);
        try
        {
            var registry = StateMachine.Registry;
            if (registry.HasShardMap)
            {
                return true;
            }
            var healthy = 0;
            foreach (var v in registry.Volumes.Values)
            {
                healthy += v.State == VolumeState.Up && Tracker.IsHealthy(v) ? 1 : 0;
            }
            if (healthy < Options.MinReplicas)
            {
                return false;
            }
            var result = await ProposeAsync(Hrw.BuildMap(registry, Options.Replicas), cancellationToken);
            return result.Status == ProposalStatus.Applied;
        }
        finally
        {
            _mapLock.Release();
        }
    }

    /// <summary>Healthy replicas of a record's version, in its replica order (for reads and redirects).</summary>
    public IReadOnlyList<VolumeRecord> ReadReplicas(KeyRecord record)
    {
        var registry = StateMachine.Registry;
        var healthy = new List<VolumeRecord>(record.Volumes.Count);
        var others = new List<VolumeRecord>();
        foreach (var id in record.Volumes)
        {
            if (registry.Volumes.TryGetValue(id, out var v))
            {
                (v.State == VolumeState.Up && Tracker.IsHealthy(v) ? healthy : others).Add(v);
            }
        }
        healthy.AddRange(others); // a volume thought down is still worth a try before giving up
        return healthy;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return; // the server and its service container both dispose it
        }
        Consensus.LeaderChanged -= OnLeaderChanged;
        await _stop.CancelAsync();
        Jobs.Dispose();
        try
        {
            await _leaderLoop;
        }
        catch (OperationCanceledException)
        {
        }
        _announcer.Dispose();
        await _batcher.DisposeAsync();
        await WaitForCommitsAsync(TimeSpan.FromSeconds(5));
        _stop.Dispose();
    }
}
