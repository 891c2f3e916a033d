namespace MiniKV.Consensus.Core;

/// <summary>
/// The Raft state machine of one node, in the shape of etcd's raft: deterministic, with no I/O, clock or
/// threads. Inputs are <see cref="Tick"/>, <see cref="Step"/> and the local requests (propose, read index,
/// transfer, reports); outputs are collected in a <see cref="Ready"/> that the driver processes (persist,
/// then send, then apply — see <see cref="Ready"/>) before calling <see cref="Advance"/>. Not thread-safe:
/// one driver thread owns it.
/// </summary>
public sealed partial class RaftNode
{
    private readonly RaftNodeOptions _opts;
    private readonly RaftLog _log;
    private readonly SortedSet<string> _voters = new(StringComparer.Ordinal);
    private readonly SortedSet<string> _learners = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, Progress> _prs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, bool> _votes = new(StringComparer.Ordinal);
    private List<Message> _msgs = [];
    private List<ReadState> _readStates = [];

    private int _electionElapsed;
    private int _heartbeatElapsed;
    private int _randomizedElectionTimeout;
    private long _pendingConfIndex;
    private long _confIndex;
    private bool _needBroadcast;
    private bool _readyOutstanding;
    private SoftState _prevSoft;
    private HardState _prevHard;

    /// <summary>
    /// Creates a node from what its storage loaded. A node whose storage is empty and that is given
    /// <paramref name="bootstrap"/> voters starts a new cluster: it writes one AddVoter/AddLearner entry per
    /// member (sorted by id, empty addresses, term 1) as committed, exactly as every other founding member
    /// does, so the founding membership is in the log and a later joiner learns it by replication.
    /// A node joining an existing cluster passes no bootstrap and waits to be contacted by the leader.
    /// </summary>
    public RaftNode(RaftNodeOptions options, RaftInitialState state, ConfState? bootstrap = null)
    {
        options.Validate();
        _opts = options;
        Id = options.Id;
        var entries = state.Entries;
        var hard = state.HardState;
        bool empty = state.Snapshot is null && entries.Count == 0 && hard.Term == 0;
        bool bootstrapping = empty && bootstrap is not null && bootstrap.Voters.Count > 0;
        _log = new RaftLog(state.Snapshot, bootstrapping ? [] : entries, hard.Commit);
        if (state.Snapshot is not null)
        {
            SetConf(state.Snapshot.Conf);
            _confIndex = state.Snapshot.Index;
        }

        Term = hard.Term;
        Vote = hard.VotedFor;
        _prevHard = hard;
        if (bootstrapping)
        {
            long index = 0;
            foreach (var v in bootstrap!.Voters.Order(StringComparer.Ordinal))
            {
                _log.Append(new Entry(1, ++index, EntryKind.ConfChange, Guid.Empty,
                    ConfChangeCodec.Encode(new ConfChange(ConfChangeKind.AddVoter, v, ""))));
            }

            foreach (var l in bootstrap.Learners.Order(StringComparer.Ordinal))
            {
                _log.Append(new Entry(1, ++index, EntryKind.ConfChange, Guid.Empty,
                    ConfChangeCodec.Encode(new ConfChange(ConfChangeKind.AddLearner, l, ""))));
            }

            Term = 1;
            _log.CommitTo(index);
        }

        // Membership takes effect when applied; replay the committed changes now so that a restarted node
        // knows whether it may campaign before its driver re-applies the log.
        for (long i = _log.FirstIndex; i <= _log.Committed; i++)
        {
            ApplyConfEntry(_log.At(i)!);
        }

        _prevSoft = new SoftState(null, RaftRole.Follower, Term);
        BecomeFollower(Term, null);
    }

    public string Id { get; }

    public long Term { get; private set; }

    public string? Vote { get; private set; }

    /// <summary>The leader this node knows of in <see cref="Term"/>, or null.</summary>
    public string? Leader { get; private set; }

    public RaftRole Role { get; private set; }

    public long CommitIndex => _log.Committed;

    public long AppliedIndex => _log.Applied;

    public long LastIndex => _log.LastIndex;

    public long LastTerm => _log.LastTerm;

    public long FirstIndex => _log.FirstIndex;

    /// <summary>The leader being handed leadership, or null.</summary>
    public string? LeadTransferee { get; private set; }

    public IReadOnlyCollection<string> Voters => _voters;

    /// <summary>The index of the membership in force; it changes whenever <see cref="Voters"/> or <see cref="Learners"/> do.</summary>
    public long ConfIndex => _confIndex;

    public IReadOnlyCollection<string> Learners => _learners;

    /// <summary>The entry at <paramref name="index"/> if it is in memory (not compacted, not beyond the end).</summary>
    public Entry? EntryAt(long index) => _log.At(index);

    /// <summary>The term of the entry at <paramref name="index"/>, or -1 if unknown.</summary>
    public long TermAt(long index) => _log.Term(index);

    /// <summary>For tests and status: a leader's replication state for <paramref name="id"/>.</summary>
    public (long Match, long Next, ProgressState State)? ProgressOf(string id) =>
        Role == RaftRole.Leader && _prs.TryGetValue(id, out var pr) ? (pr.Match, pr.Next, pr.State) : null;

    private int Quorum => (_voters.Count / 2) + 1;

    private bool Promotable => _voters.Contains(Id) && _log.PendingSnapshot is null;

    /// <summary>Advances logical time by one tick.</summary>
    public void Tick()
    {
        _ticks++;
        if (Role == RaftRole.Leader)
        {
            TickLeader();
        }
        else
        {
            _electionElapsed++;
            if (Promotable && _electionElapsed >= _randomizedElectionTimeout)
            {
                _electionElapsed = 0;
                Campaign(preVote: _opts.PreVote, transfer: false);
            }
        }
    }

    private void TickLeader()
    {
        _heartbeatElapsed++;
        _electionElapsed++;
        if (_electionElapsed >= _opts.ElectionTicksMin)
        {
            _electionElapsed = 0;
            if (_opts.CheckQuorum && !QuorumActive())
            {
                BecomeFollower(Term, null);
                return;
            }

            // A transfer that did not finish within an election timeout is abandoned so proposals flow again.
            LeadTransferee = null;
        }

        if (_heartbeatElapsed >= _opts.HeartbeatTicks)
        {
            _heartbeatElapsed = 0;
            BroadcastHeartbeat();
        }
        else
        {
            RetryStalledReads();
        }
    }

    /// <summary>
    /// The driver's transport lost its connection to <paramref name="id"/> (a reset stream, a refused reconnect). When
    /// that is this follower's leader, the node stops vouching for it: its lease ends (it answers pre-votes again) and
    /// its election timer fires soon instead of after a whole election timeout. The survivors of one crash fire in id
    /// order, one heartbeat interval apart (with jitter inside each slot): two that campaign within one pre-vote round
    /// trip of each other both win the pre-vote, split the real vote, and cost a whole election timeout (seen in 1 of
    /// 4 kills with a purely random delay). Safe whatever the report's truth: it only moves an election earlier, and a
    /// pre-vote cannot win while the other voters still hear from a live leader (their leases hold), so a false report
    /// costs one rejected pre-vote round.
    /// </summary>
    public void ReportLeaderUnreachable(string id)
    {
        // With lease reads the follower's lease must run its whole course: an early campaign could elect a new
        // leader while a live but cut-off old one still serves reads from its lease.
        if (_opts.LeaseReads || Role != RaftRole.Follower || Leader != id || !Promotable)
        {
            return;
        }

        int rank = 0;
        foreach (var voter in _voters)
        {
            if (voter != id && string.CompareOrdinal(voter, Id) < 0)
            {
                rank++;
            }
        }

        int fireIn = 1 + (rank * _opts.HeartbeatTicks) + _opts.Random.Next(Math.Max(1, _opts.HeartbeatTicks / 2));
        _electionElapsed = Math.Max(_electionElapsed,
            Math.Max(_opts.ElectionTicksMin, _randomizedElectionTimeout - fireIn));
    }

    /// <summary>
    /// Whether this node heard from <paramref name="id"/> within a minimum election timeout: as a leader, from any
    /// member (itself included); as a follower, only from its leader (it hears from no one else).
    /// </summary>
    public bool HeardRecentlyFrom(string id)
    {
        if (id == Id)
        {
            return true;
        }

        if (Role == RaftRole.Leader)
        {
            return _prs.TryGetValue(id, out var pr) && _ticks - pr.LastHeardTick <= _opts.ElectionTicksMin;
        }

        return id == Leader && _electionElapsed < _opts.ElectionTicksMin;
    }

    private bool QuorumActive()
    {
        int active = 0;
        foreach (var (id, pr) in _prs)
        {
            if (id == Id)
            {
                if (!pr.IsLearner)
                {
                    active++;
                }

                continue;
            }

            if (pr.RecentActive && !pr.IsLearner)
            {
                active++;
            }

            pr.RecentActive = false;
        }

        return active >= Quorum;
    }

    /// <summary>Starts an election now (tests; a driver lets ticks do it).</summary>
    public void Campaign() => Campaign(_opts.PreVote, transfer: false);

    private void Campaign(bool preVote, bool transfer)
    {
        if (Role == RaftRole.Leader || !Promotable || HasUnappliedConfChange())
        {
            return;
        }

        long voteTerm;
        MessageType type;
        if (preVote)
        {
            BecomePreCandidate();
            voteTerm = Term + 1;
            type = MessageType.PreVote;
        }
        else
        {
            BecomeCandidate();
            voteTerm = Term;
            type = MessageType.Vote;
        }

        if (Poll(Id, granted: true) == VoteResult.Won)
        {
            if (preVote)
            {
                Campaign(preVote: false, transfer);
            }
            else
            {
                BecomeLeader();
            }

            return;
        }

        foreach (var v in _voters)
        {
            if (v == Id)
            {
                continue;
            }

            Send(new Message
            {
                Type = type,
                From = Id,
                To = v,
                Term = voteTerm,
                Index = _log.LastIndex,
                LogTerm = _log.LastTerm,
                Context = transfer ? TransferContext : default,
            });
        }
    }

    private static readonly byte[] TransferContext = [1];

    private bool HasUnappliedConfChange()
    {
        for (long i = _log.Applied + 1; i <= _log.Committed; i++)
        {
            if (_log.At(i)?.Kind == EntryKind.ConfChange)
            {
                return true;
            }
        }

        return false;
    }

    private enum VoteResult
    {
        Pending,
        Won,
        Lost,
    }

    private VoteResult Poll(string from, bool granted)
    {
        _votes.TryAdd(from, granted);
        int yes = 0, no = 0;
        foreach (var v in _voters)
        {
            if (_votes.TryGetValue(v, out bool g))
            {
                if (g)
                {
                    yes++;
                }
                else
                {
                    no++;
                }
            }
        }

        return yes >= Quorum ? VoteResult.Won : no >= Quorum ? VoteResult.Lost : VoteResult.Pending;
    }

    private void Reset(long term)
    {
        if (Term != term)
        {
            Term = term;
            Vote = null;
        }

        Leader = null;
        _electionElapsed = 0;
        _heartbeatElapsed = 0;
        _randomizedElectionTimeout = _opts.Random.Next(_opts.ElectionTicksMin, _opts.ElectionTicksMax);
        LeadTransferee = null;
        _votes.Clear();
        _prs.Clear();
        _pendingConfIndex = 0;
        ResetReads();
        ResetLease();
    }

    private void BecomeFollower(long term, string? leader)
    {
        Reset(term);
        Leader = leader;
        Role = RaftRole.Follower;
    }

    private void BecomePreCandidate()
    {
        // Neither the term nor the vote changes: a pre-candidate that loses leaves no trace.
        _votes.Clear();
        Leader = null;
        Role = RaftRole.PreCandidate;
    }

    private void BecomeCandidate()
    {
        Reset(Term + 1);
        Vote = Id;
        Role = RaftRole.Candidate;
    }

    private void BecomeLeader()
    {
        Reset(Term);
        Leader = Id;
        Role = RaftRole.Leader;
        foreach (var v in _voters)
        {
            _prs[v] = NewProgress(isLearner: false);
        }

        foreach (var l in _learners)
        {
            _prs[l] = NewProgress(isLearner: true);
        }

        if (_prs.TryGetValue(Id, out var self))
        {
            // The leader's own copy counts towards quorum only once it is durable (see Advance).
            self.Match = _log.Stable;
            self.BecomeReplicate();
        }

        // No membership change until everything from earlier terms is applied (the fix for the single-server
        // change bug: a new leader must commit an entry of its own term first).
        _pendingConfIndex = _log.LastIndex;
        _log.Append(new Entry(Term, _log.LastIndex + 1, EntryKind.Noop, Guid.Empty, ReadOnlyMemory<byte>.Empty));
        _needBroadcast = true;
    }

    private Progress NewProgress(bool isLearner) =>
        new(_log.LastIndex + 1, _opts.MaxInflightAppends, isLearner) { RecentActive = true, LastHeardTick = _ticks };

    private void Send(Message m) => _msgs.Add(m);

    private Message Msg(MessageType type, string to) => new() { Type = type, From = Id, To = to, Term = Term };
}
