using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using MiniKV.Consensus.Core;

namespace MiniKV.Consensus.Hosting;

/// <summary>
/// Runs a <see cref="RaftNode"/>: one dedicated thread owns the node and does, for every Ready, one storage
/// append and one sync (group commit: every proposal queued since the previous Ready goes into it), then
/// the sends, then applies committed entries to the state machine in batches. Everything else (proposals,
/// messages, reads) reaches that thread through one queue, so callers never block on the core.
/// Thread-safe. Does not own (dispose) the storage, the transport or the state machine.
/// </summary>
public sealed partial class RaftHost : IConsensus, IRaftMessageHandler, IAsyncDisposable
{
    private readonly RaftHostOptions _opts;
    private readonly IRaftStorage _storage;
    private readonly IRaftTransport _transport;
    private readonly IRaftStateMachine _sm;
    private readonly RaftNode _node;
    private readonly ConcurrentQueue<object> _inbox = new();
    private readonly ManualResetEventSlim _wake;
    private readonly Stopwatch _clock = new();
    private readonly Thread _thread;
    private readonly TaskCompletionSource<Exception?> _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Dictionary<string, string> _addresses = new(StringComparer.Ordinal);
    // Status's member list, rebuilt only when the membership (ConfIndex) or an address changes, not after every Ready.
    private IReadOnlyList<(string NodeId, string Address, bool IsVoter)>? _members;
    private long _membersConfIndex;
    private readonly AppliedRequestTable _applied;
    private volatile bool _stopping;
    private volatile Exception? _fault;
    // The members HeardRecentlyFrom answers true for, replaced (never changed in place) by the Raft thread each tick.
    private volatile HashSet<string> _heardFrom = new(StringComparer.Ordinal);
    private volatile StrongBox<LeaderInfo> _leader;
    private volatile RaftStatus _status;
    private int _started;

    public RaftHost(RaftHostOptions options, IRaftStorage storage, IRaftTransport transport, IRaftStateMachine stateMachine)
    {
        _opts = options;
        if (options.SnapshotStagingDirectory is { } staging)
        {
            SnapshotStaging.RemoveLeftovers(staging, options.NodeId);
        }

        _wake = new ManualResetEventSlim(false, options.WakeSpinCount);
        _storage = storage;
        _transport = transport;
        _sm = stateMachine;
        _applied = new AppliedRequestTable(options.DedupWindow, options.DedupResultWindow);
        var state = storage.Load();
        _node = new RaftNode(options.ToNodeOptions(), state, options.InitialMembers);
        foreach (var (id, address) in options.PeerAddresses)
        {
            SetAddress(id, address);
            if (id != options.NodeId)
            {
                transport.SetPeerAddress(id, address);
            }
        }

        SeedDedup(state.Entries);
        _durableIndex = _node.LastIndex;
        _lastSnapshotIndex = state.Snapshot?.Index ?? 0;
        _leader = new StrongBox<LeaderInfo>(new LeaderInfo(null, _node.Term, false));
        _status = BuildStatus();
        _thread = new Thread(Run) { IsBackground = true, Name = $"raft-{options.NodeId}" };
    }

    public string NodeId => _opts.NodeId;

    public bool HeardRecentlyFrom(string nodeId) => _heardFrom.Contains(nodeId);

    private void PublishHeardFrom()
    {
        // Runs every tick: a new set only when it would differ from the published one.
        var current = _heardFrom;
        int heard = 0;
        bool same = true;
        foreach (var id in _node.Voters.Concat(_node.Learners))
        {
            if (_node.HeardRecentlyFrom(id))
            {
                heard++;
                same &= current.Contains(id);
            }
        }

        if (!same || heard != current.Count)
        {
            _heardFrom = new HashSet<string>(_node.Voters.Concat(_node.Learners).Where(_node.HeardRecentlyFrom), StringComparer.Ordinal);
        }
    }

    public LeaderInfo Leader => _leader.Value;

    public event Action<LeaderInfo>? LeaderChanged;

    public IReadOnlyList<(string NodeId, string Address, bool IsVoter)> Members => Status.Members;

    /// <summary>A recent picture of the node (refreshed after every Ready).</summary>
    public RaftStatus Status => _status;

    /// <summary>Starts the Raft thread. Messages that arrive before are kept and handled then.</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) == 0)
        {
            _thread.Start();
        }
    }

    public Task<ProposalResult> ProposeAsync(ReadOnlyMemory<byte> command, Guid requestId, CancellationToken cancellationToken)
    {
        var input = new ProposeInput(command, requestId);
        Enqueue(input);
        return input.Completion.Task.WaitAsync(cancellationToken);
    }

    public Task<ProposalResult> ChangeMembershipAsync(ConfChange change, CancellationToken cancellationToken)
    {
        var input = new ConfInput(change);
        Enqueue(input);
        return input.Completion.Task.WaitAsync(cancellationToken);
    }

    public Task<bool> ReadBarrierAsync(CancellationToken cancellationToken) => ReadBarrierAsync(anyMember: false, cancellationToken);

    public Task<bool> ReadBarrierOnAnyMemberAsync(CancellationToken cancellationToken) => ReadBarrierAsync(anyMember: true, cancellationToken);

    private async Task<bool> ReadBarrierAsync(bool anyMember, CancellationToken cancellationToken)
    {
        var input = new ReadInput(anyMember);
        Enqueue(input);
        try
        {
            return await input.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    public Task<bool> TransferLeadershipAsync(string nodeId, CancellationToken cancellationToken)
    {
        var input = new TransferInput(nodeId);
        Enqueue(input);
        return input.Completion.Task.WaitAsync(cancellationToken);
    }

    public void OnMessage(Message message)
    {
        // Never throws into the transport: after a failure or during shutdown messages are dropped.
        if (!_stopping && _fault is null)
        {
            Enqueue(message);
        }
    }

    /// <summary>
    /// The transport lost its connection to <paramref name="nodeId"/>. If that is the leader, this follower campaigns
    /// soon (survivors in id order, a heartbeat interval apart) instead of after an election timeout
    /// (<see cref="RaftNode.ReportLeaderUnreachable"/>).
    /// Thread-safe; wire it to the transport's unreachable-peer notice.
    /// </summary>
    public void ReportUnreachable(string nodeId)
    {
        if (!_stopping && _fault is null)
        {
            Enqueue(new UnreachableInput(nodeId));
        }
    }

    /// <summary>
    /// Receives the whole snapshot into a staging file before the core sees its message. Once the core accepts a
    /// snapshot it has replaced its log with it, so the data must already be here: a stream that breaks halfway (the
    /// leader died) fails this call on the transport's thread and changes nothing, where reading the network inside
    /// the state machine's restore would have failed the Raft loop itself. The leader sends the snapshot again later.
    /// </summary>
    public async Task OnSnapshotAsync(Message message, Stream data, CancellationToken cancellationToken)
    {
        var staged = await SnapshotStaging.ReceiveAsync(_opts.SnapshotStagingDirectory, NodeId, data, cancellationToken).ConfigureAwait(false);
        var input = new SnapshotInput(message, staged);
        try
        {
            Enqueue(input);
        }
        catch
        {
            await staged.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        await input.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Completes when the Raft loop ends: with null after <see cref="DisposeAsync"/>, or with the exception that stopped
    /// it. After a failure this node neither votes nor replicates and every call throws; the process should say why and
    /// exit, so that a restart recovers it from its durable state instead of leaving a silent member in the cluster.
    /// </summary>
    public Task<Exception?> Stopped => _stopped.Task;

    public async ValueTask DisposeAsync()
    {
        _stopping = true;
        _wake.Set();
        if (Volatile.Read(ref _started) == 1)
        {
            await _stopped.Task.ConfigureAwait(false);
        }
        else
        {
            FailEverything(null);
        }

        // _wake is not disposed: a late caller may still Set it, and it holds no kernel handle unless waited on by handle.
        DisposeSnapshots();
    }

    private void Enqueue(object input)
    {
        if (_fault is { } f)
        {
            throw new InvalidOperationException("the Raft loop failed", f);
        }

        if (_stopping)
        {
            Reject(input);
            return;
        }

        _inbox.Enqueue(input);
        _wake.Set();
    }

    // Called once and looping for the host's life, it would stay in tier-0 code (seen in perf: 0.4-1.5 % of a
    // coordinator's samples in its own unoptimized frame); compiled optimized at once instead.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Run()
    {
        var tick = _opts.TickInterval;
        _clock.Restart();
        _nextTick = tick;
        try
        {
            while (!_stopping)
            {
                while (_inbox.TryDequeue(out var input))
                {
                    Handle(input);
                }

                var now = _clock.Elapsed;
                if (now >= _nextTick)
                {
                    // At most two ticks per pass: if this thread stalled (a slow fsync), logical time runs slow
                    // instead of firing a burst of ticks that would start needless elections. The ticks skipped are
                    // time a leader lease did not see pass, so the lease ends.
                    _node.Tick();
                    _nextTick += tick;
                    if (now >= _nextTick)
                    {
                        _node.Tick();
                        _nextTick = now + tick;
                        _node.ExpireLease();
                    }

                    OnTick(now);
                }

                while (_node.HasReady)
                {
                    ProcessReady(_node.GetReady(), now);
                }

                MaybeSnapshot();
                CompleteIncomingSnapshot();
                _status = BuildStatus();

                _wake.Reset();
                if (_inbox.IsEmpty && !_stopping)
                {
                    var wait = _nextTick - _clock.Elapsed;
                    if (wait > TimeSpan.Zero)
                    {
                        // Whole milliseconds, rounded up (ticks are never early): a TimeSpan wait truncates to whole
                        // milliseconds, so the last one before every tick was a zero wait, a busy loop (about 5 % of
                        // this machine's CPU under load, in a profile of three coordinators).
                        _wake.Wait(WaitMilliseconds(wait));
                    }
                }
            }

            FailEverything(null);
        }
        catch (Exception e)
        {
            _fault = e;
            FailEverything(e);
        }
        finally
        {
            _stopped.TrySetResult(_fault);
        }
    }

    /// <summary>A wait of at least <paramref name="wait"/> in the whole milliseconds an event wait takes.</summary>
    internal static int WaitMilliseconds(TimeSpan wait) => (int)Math.Ceiling(wait.TotalMilliseconds);

    private void FailEverything(Exception? e)
    {
        _ = e;
        while (_inbox.TryDequeue(out var input))
        {
            Reject(input);
        }

        FailWaiters(ProposalStatus.Unknown);
        FailReads();
        FailTransfers();
        CompleteIncomingSnapshot();
    }

    private static void Reject(object input)
    {
        switch (input)
        {
            case ProposeInput p:
                p.Completion.TrySetResult(new ProposalResult(ProposalStatus.NotLeader, 0, null, null));
                break;
            case ConfInput c:
                c.Completion.TrySetResult(new ProposalResult(ProposalStatus.NotLeader, 0, null, null));
                break;
            case ReadInput r:
                r.Completion.TrySetResult(false);
                break;
            case TransferInput t:
                t.Completion.TrySetResult(false);
                break;
            case SnapshotInput s:
                s.Data.Dispose();
                s.Completion.TrySetException(new InvalidOperationException("the Raft host is stopping"));
                break;
        }
    }

    private RaftStatus BuildStatus()
    {
        if (_members is null || _membersConfIndex != _node.ConfIndex)
        {
            var members = new List<(string, string, bool)>();
            foreach (var v in _node.Voters)
            {
                members.Add((v, _addresses.GetValueOrDefault(v, ""), true));
            }

            foreach (var l in _node.Learners)
            {
                members.Add((l, _addresses.GetValueOrDefault(l, ""), false));
            }

            _members = members;
            _membersConfIndex = _node.ConfIndex;
        }

        return new RaftStatus(NodeId, _node.Role, _node.Term, _node.Leader, _node.CommitIndex, _sm.AppliedIndex,
            _node.LastIndex, _node.FirstIndex - 1, _members, _syncs, _entriesPersisted, _deduplicated,
            _node.LeaseReadsServed);
    }

    private void SetAddress(string id, string address)
    {
        _addresses[id] = address;
        _members = null;
    }

    private void RemoveAddress(string id)
    {
        _addresses.Remove(id);
        _members = null;
    }

    private sealed class ProposeInput(ReadOnlyMemory<byte> data, Guid requestId)
    {
        public ReadOnlyMemory<byte> Data { get; } = data;

        public Guid RequestId { get; } = requestId;

        public TaskCompletionSource<ProposalResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class ConfInput(ConfChange change)
    {
        public ConfChange Change { get; } = change;

        public TaskCompletionSource<ProposalResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed record UnreachableInput(string NodeId);

    private sealed class ReadInput(bool anyMember)
    {
        /// <summary>A follower may ask its leader for the read index instead of answering false.</summary>
        public bool AnyMember { get; } = anyMember;

        public TaskCompletionSource<bool> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class TransferInput(string to)
    {
        public string To { get; } = to;

        public TaskCompletionSource<bool> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>A received snapshot; <see cref="Data"/> (the staged file) is disposed by whoever completes or rejects it.</summary>
    private sealed class SnapshotInput(Message message, Stream data)
    {
        public Message Message { get; } = message;

        public Stream Data { get; } = data;

        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
