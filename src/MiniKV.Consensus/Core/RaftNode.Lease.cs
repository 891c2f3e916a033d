namespace MiniKV.Consensus.Core;

/// <summary>
/// Leader lease reads (thesis §6.4.1), on when <see cref="RaftNodeOptions.LeaseReads"/> is set on every voter.
/// <para>
/// Every heartbeat round (to all followers, or to a read's bare quorum) is numbered; a follower echoes the number.
/// When a quorum (the leader counting itself) has echoed round r, no other node can become leader until the
/// followers' check-quorum leases, restarted when they received r, run out: a voter grants no vote within <see cref="RaftNodeOptions.ElectionTicksMin"/> ticks
/// of hearing from its leader. Until then this leader's commit index is the cluster's, so a read is answered at once
/// with it, without a heartbeat round.
/// </para>
/// <para>
/// The clock assumption, in ticks. A driver delivers ticks on a fixed schedule and never early; the lease lasts
/// <see cref="LeaseTicks"/> of this leader's ticks from the tick at which round r was sent:
/// <see cref="RaftNodeOptions.ElectionTicksMin"/> less 2 ticks for the follower's side (a follower may deliver two
/// late ticks at once after receiving r), less 2 for the leader's (the read may come up to two tick periods after
/// the tick it is counted at), less a tenth of the rest for clock rates that differ between machines (a node whose
/// clock runs more than ~10 % slow or fast against another's breaks the lease). A driver that falls behind its
/// schedule, whether it skips ticks or answers a read after a stall, must call <see cref="ExpireLease"/> first:
/// the ticks it did not count are time the lease did not see pass (RaftHost does both).
/// </para>
/// <para>
/// What else the lease needs, and this node enforces when the option is on: a leader that sent TimeoutNow serves
/// no lease read for the rest of its term (the transfer target campaigns past the followers' leases); a follower
/// ignores <see cref="ReportLeaderUnreachable"/> (the early campaign would cut its lease short); and a voter grants
/// no vote within its first <see cref="RaftNodeOptions.ElectionTicksMin"/> ticks after a restart (it may have echoed
/// a round just before it crashed, and it forgot when).
/// </para>
/// </summary>
public sealed partial class RaftNode
{
    // The first round sent at each tick that a quorum has not echoed yet, oldest first.
    private readonly Queue<(long Round, long Tick)> _unechoedRounds = new();
    private long _ticks;
    private long _lastRoundTick = -1;
    private long _leaseFrom = -1;
    private bool _leaseRevoked;

    /// <summary>How many reads this node answered from its lease (without a heartbeat round).</summary>
    public long LeaseReadsServed { get; private set; }

    /// <summary>How many ticks after sending a quorum-echoed round this leader may serve lease reads; 0 or less
    /// when the election timeout is too short for a lease (every read then costs a heartbeat round).</summary>
    private int LeaseTicks
    {
        get
        {
            int usable = _opts.ElectionTicksMin - 4;
            return usable - ((usable + 9) / 10);
        }
    }

    /// <summary>Whether a read arriving now may be answered from this leader's commit index without a round.</summary>
    private bool HoldsLease =>
        _opts.LeaseReads && Role == RaftRole.Leader && !_leaseRevoked && LeadTransferee is null
        && _leaseFrom >= 0 && _ticks - _leaseFrom <= LeaseTicks;

    /// <summary>
    /// Forgets the current lease: the driver lost track of time (it skipped ticks, or is about to serve a read later
    /// than one tick period after the tick it is due to deliver next). Reads go back to heartbeat rounds until a
    /// round sent after this call is echoed by a quorum.
    /// </summary>
    public void ExpireLease()
    {
        _unechoedRounds.Clear();
        _leaseFrom = -1;
    }

    private void ResetLease()
    {
        ExpireLease();
        _leaseRevoked = false;
    }

    private void OnRoundSent(long round)
    {
        if (_opts.LeaseReads && !(_unechoedRounds.Count > 0 && _lastRoundTick == _ticks))
        {
            _unechoedRounds.Enqueue((round, _ticks));
            _lastRoundTick = _ticks;
        }
    }

    private void OnRoundEchoed()
    {
        if (!_opts.LeaseReads || _unechoedRounds.Count == 0)
        {
            return;
        }

        // The highest round that a quorum of voters has echoed (this leader echoes its own rounds at once).
        Span<long> echoed = _voters.Count <= 16 ? stackalloc long[_voters.Count] : new long[_voters.Count];
        int i = 0;
        foreach (var v in _voters)
        {
            echoed[i++] = v == Id ? _round : _prs.TryGetValue(v, out var pr) ? pr.ReadAck : 0;
        }

        echoed.Sort();
        long quorumRound = echoed[^Quorum];
        while (_unechoedRounds.TryPeek(out var r) && r.Round <= quorumRound)
        {
            // A round's tick is the tick its batch's first round was sent at: never later than the round itself.
            _leaseFrom = r.Tick;
            _unechoedRounds.Dequeue();
        }
    }

    /// <summary>A voter that started less than a minimum election timeout ago grants no vote (see above).</summary>
    private bool InStartupLease => _opts.LeaseReads && _ticks < _opts.ElectionTicksMin;

    private void SendTimeoutNow(string to)
    {
        _leaseRevoked = true;
        Send(Msg(MessageType.TimeoutNow, to));
    }
}
