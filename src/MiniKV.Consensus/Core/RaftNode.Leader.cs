namespace MiniKV.Consensus.Core;

public sealed partial class RaftNode
{
    private void StepLeader(Message m)
    {
        if (!_prs.TryGetValue(m.From, out var pr))
        {
            if (m.Type == MessageType.ReadIndex)
            {
                // Not a member (yet): it cannot be counted, but it may read.
                LeaderReadIndex(m.From, m.Context);
            }

            return;
        }

        pr.LastHeardTick = _ticks;
        switch (m.Type)
        {
            case MessageType.AppendResponse:
                pr.RecentActive = true;
                HandleAppendResponse(m, pr);
                break;
            case MessageType.HeartbeatResponse:
                pr.RecentActive = true;
                pr.ProbeSent = false;
                if (pr.State == ProgressState.Replicate && pr.Inflights.Full)
                {
                    // Acks may have been lost; free one slot so replication cannot stall for good.
                    pr.Inflights.FreeFirst();
                }

                if (pr.Match < _log.LastIndex)
                {
                    SendAppend(m.From, pr, sendIfEmpty: true);
                }

                if (m.Context.Length == 8)
                {
                    long seq = BitConverter.ToInt64(m.Context.Span);
                    pr.ReadAck = Math.Max(pr.ReadAck, seq);
                    OnRoundEchoed();
                    ReleaseReads();
                }

                break;
            case MessageType.ReadIndex:
                LeaderReadIndex(m.From, m.Context);
                break;
        }
    }

    private void HandleAppendResponse(Message m, Progress pr)
    {
        if (m.Reject)
        {
            long next = m.RejectHint;
            if (m.LogTerm > 0)
            {
                next = _log.FindConflictByTerm(m.RejectHint, m.LogTerm).Index;
            }

            if (pr.MaybeDecrTo(m.Index, next))
            {
                if (pr.State == ProgressState.Replicate)
                {
                    pr.BecomeProbe();
                }

                SendAppend(m.From, pr, sendIfEmpty: true);
            }

            return;
        }

        bool oldPaused = pr.IsPaused;
        if (!pr.MaybeUpdate(m.Index))
        {
            return;
        }

        switch (pr.State)
        {
            case ProgressState.Probe:
                pr.BecomeReplicate();
                break;
            case ProgressState.Snapshot when pr.Match >= pr.PendingSnapshot:
                pr.BecomeProbe();
                pr.BecomeReplicate();
                break;
            case ProgressState.Replicate:
                pr.Inflights.FreeLE(m.Index);
                break;
        }

        // A new commit index is not broadcast on its own (etcd-raft sends every follower an empty Append for it):
        // the next Append or heartbeat carries it. Under load that saves about one message each way per follower
        // and proposal; when idle, followers apply up to a heartbeat interval later. A follower that asks for a
        // read index is told at once (Respond), and so is everyone when the membership changes (ApplyConfEntry).
        MaybeCommit();
        if (oldPaused)
        {
            SendAppend(m.From, pr, sendIfEmpty: false);
        }

        while (MaybeSendAppend(m.From, pr, sendIfEmpty: false))
        {
        }

        if (m.From == LeadTransferee && pr.Match == _log.LastIndex)
        {
            SendTimeoutNow(m.From);
        }
    }

    private bool MaybeCommit()
    {
        Span<long> matches = _voters.Count <= 16 ? stackalloc long[_voters.Count] : new long[_voters.Count];
        int n = 0;
        foreach (var v in _voters)
        {
            matches[n++] = _prs.TryGetValue(v, out var pr) ? pr.Match : 0;
        }

        if (n == 0)
        {
            return false;
        }

        matches.Sort();
        long mci = matches[n - Quorum];

        // Only an entry of the current term is committed by counting replicas (Raft §5.4.2); earlier
        // entries commit with it.
        if (mci > _log.Committed && _log.Term(mci) == Term)
        {
            _log.CommitTo(mci);
            OnCommittedInTerm();
            return true;
        }

        return false;
    }

    /// <summary>
    /// Tells every follower that has not heard the current commit index, with an empty Append when there are no
    /// entries to carry it (<paramref name="to"/> limits this to one member).
    /// </summary>
    private void TellCommit(string? to = null)
    {
        foreach (var (id, pr) in _prs)
        {
            if (id != Id && (to is null || id == to) && pr.CommitSent < _log.Committed)
            {
                SendAppend(id, pr, sendIfEmpty: true);
            }
        }
    }

    /// <summary>
    /// Sends the new entries to every follower. One that already has them all (an acknowledgement handled before this
    /// Ready sent them) gets nothing: an empty Append would only carry the commit index, which waits for the next
    /// Append or heartbeat. A follower in probe state still gets its probe, empty or not.
    /// </summary>
    private void BroadcastAppend()
    {
        foreach (var (id, pr) in _prs)
        {
            if (id != Id)
            {
                SendAppend(id, pr, sendIfEmpty: pr.State != ProgressState.Replicate);
            }
        }
    }

    private void SendAppend(string to, Progress pr, bool sendIfEmpty) => MaybeSendAppend(to, pr, sendIfEmpty);

    private bool MaybeSendAppend(string to, Progress pr, bool sendIfEmpty)
    {
        if (pr.IsPaused)
        {
            return false;
        }

        long prevIndex = pr.Next - 1;
        long prevTerm = _log.Term(prevIndex);
        List<Entry>? entries = prevTerm < 0
            ? null
            : _log.Slice(pr.Next, _log.LastIndex, _opts.MaxBytesPerAppend, _opts.MaxEntriesPerAppend);
        if (entries is not null && entries.Count == 0 && !sendIfEmpty)
        {
            return false;
        }

        if (entries is null)
        {
            // The follower needs entries we compacted: send the snapshot instead (the driver streams the
            // state machine's bytes with it). Only to a follower known alive, as a snapshot is expensive.
            if (!pr.RecentActive || _log.Snapshot is null)
            {
                return false;
            }

            var snap = _log.Snapshot;
            pr.BecomeSnapshot(snap.Index);
            Send(Msg(MessageType.Snapshot, to) with { Snapshot = snap });
            return true;
        }

        Send(Msg(MessageType.Append, to) with
        {
            Index = prevIndex,
            LogTerm = prevTerm,
            Entries = entries,
            Commit = _log.Committed,
        });
        // The follower commits up to the last index this Append vouches for, not beyond.
        pr.CommitSent = Math.Max(pr.CommitSent, Math.Min(_log.Committed, prevIndex + entries.Count));
        switch (pr.State)
        {
            case ProgressState.Replicate when entries.Count > 0:
                long last = entries[^1].Index;
                pr.Next = last + 1;
                pr.Inflights.Add(last);
                break;
            case ProgressState.Probe:
                pr.ProbeSent = true;
                break;
        }

        return true;
    }

    /// <summary>Sends one heartbeat round: a new round number that followers echo, for reads and the lease.</summary>
    private void BroadcastHeartbeat()
    {
        long round = NextRound();
        _broadcastRound = round;
        ReadOnlyMemory<byte> ctx = BitConverter.GetBytes(round);
        foreach (var (id, pr) in _prs)
        {
            if (id != Id)
            {
                SendHeartbeat(id, pr, ctx);
            }
        }
    }

    /// <summary>Numbers a new heartbeat round (the context followers echo).</summary>
    private long NextRound()
    {
        long round = ++_round;
        OnRoundSent(round);
        return round;
    }

    private void SendHeartbeat(string id, Progress pr, ReadOnlyMemory<byte> round)
    {
        // Never tell a follower a commit index beyond what it is known to hold.
        long commit = Math.Min(pr.Match, _log.Committed);
        Send(Msg(MessageType.Heartbeat, id) with { Commit = commit, Context = round });
        pr.CommitSent = Math.Max(pr.CommitSent, commit);
    }

    /// <summary>
    /// Appends a command if this node leads. Returns the index it was appended at (its term is
    /// <see cref="Term"/>), or 0 when this node does not lead or is handing leadership over.
    /// The Append messages go out with the next Ready, batched with every other proposal made before it.
    /// </summary>
    public long Propose(ReadOnlyMemory<byte> data, Guid requestId)
    {
        if (Role != RaftRole.Leader || LeadTransferee is not null)
        {
            return 0;
        }

        long index = _log.LastIndex + 1;
        _log.Append(new Entry(Term, index, EntryKind.Normal, requestId, data));
        _needBroadcast = true;
        return index;
    }

    /// <summary>
    /// Proposes a single-server membership change. Returns the index, 0 when not leading, or -1 when refused:
    /// another change is not yet applied, or the change makes no sense for the current membership.
    /// </summary>
    public long ProposeConfChange(ConfChange change)
    {
        if (Role != RaftRole.Leader || LeadTransferee is not null)
        {
            return 0;
        }

        if (_pendingConfIndex > _log.Applied || !IsValidChange(change))
        {
            return -1;
        }

        long index = _log.LastIndex + 1;
        _log.Append(new Entry(Term, index, EntryKind.ConfChange, Guid.Empty, ConfChangeCodec.Encode(change)));
        _pendingConfIndex = index;
        _needBroadcast = true;
        return index;
    }

    private bool IsValidChange(ConfChange c) => c.Kind switch
    {
        ConfChangeKind.AddLearner => !_voters.Contains(c.NodeId) && !_learners.Contains(c.NodeId),
        ConfChangeKind.PromoteLearner => _learners.Contains(c.NodeId),
        ConfChangeKind.AddVoter => !_voters.Contains(c.NodeId),
        ConfChangeKind.Remove => _learners.Contains(c.NodeId) || (_voters.Contains(c.NodeId) && _voters.Count > 1),
        _ => false,
    };

    /// <summary>Applies a committed membership entry (idempotent; entries at or below the last applied change are skipped).</summary>
    private void ApplyConfEntry(Entry e)
    {
        if (e.Kind != EntryKind.ConfChange || e.Index <= _confIndex)
        {
            return;
        }

        _confIndex = e.Index;
        var c = ConfChangeCodec.TryDecode(e.Data.Span)
            ?? throw new InvalidOperationException($"undecodable membership entry at index {e.Index}");
        switch (c.Kind)
        {
            case ConfChangeKind.AddLearner when !_voters.Contains(c.NodeId):
                _learners.Add(c.NodeId);
                break;
            case ConfChangeKind.PromoteLearner when _learners.Remove(c.NodeId):
            case ConfChangeKind.AddVoter:
                _learners.Remove(c.NodeId);
                _voters.Add(c.NodeId);
                break;
            case ConfChangeKind.Remove:
                _voters.Remove(c.NodeId);
                _learners.Remove(c.NodeId);
                break;
        }

        if (Role != RaftRole.Leader)
        {
            return;
        }

        // Membership changes are rare and a leader that removed itself is about to stop: tell the followers now.
        TellCommit();
        if (!_voters.Contains(Id))
        {
            // A leader that removed itself stops leading once the change is applied.
            BecomeFollower(Term, null);
            return;
        }

        foreach (var id in _voters.Concat(_learners))
        {
            bool learner = _learners.Contains(id);
            if (_prs.TryGetValue(id, out var pr))
            {
                pr.IsLearner = learner;
            }
            else
            {
                _prs[id] = NewProgress(learner);
            }
        }

        foreach (var id in _prs.Keys.ToList())
        {
            if (!_voters.Contains(id) && !_learners.Contains(id))
            {
                _prs.Remove(id);
                if (LeadTransferee == id)
                {
                    LeadTransferee = null;
                }
            }
        }

        MaybeCommit();
        _needBroadcast = true;
    }

    /// <summary>
    /// Hands leadership to <paramref name="to"/> (thesis §3.10): once it holds the whole log it gets
    /// TimeoutNow and campaigns at once, skipping pre-vote. Proposals are refused meanwhile; the attempt is
    /// abandoned after an election timeout. Returns false when this node does not lead or the target is not a voter.
    /// </summary>
    public bool TransferLeadership(string to)
    {
        if (Role != RaftRole.Leader || to == Id || !_voters.Contains(to) || !_prs.TryGetValue(to, out var pr))
        {
            return false;
        }

        if (LeadTransferee == to)
        {
            return true;
        }

        LeadTransferee = to;
        _electionElapsed = 0;
        if (pr.Match == _log.LastIndex)
        {
            SendTimeoutNow(to);
        }
        else
        {
            SendAppend(to, pr, sendIfEmpty: true);
        }

        return true;
    }

    /// <summary>The transport could not reach <paramref name="to"/>: stop pipelining to it and probe.</summary>
    public void ReportUnreachable(string to)
    {
        if (Role == RaftRole.Leader && _prs.TryGetValue(to, out var pr) && pr.State == ProgressState.Replicate)
        {
            pr.BecomeProbe();
        }
    }

    /// <summary>The driver finished (or failed) sending a snapshot to <paramref name="to"/>.</summary>
    public void ReportSnapshot(string to, bool success)
    {
        if (Role != RaftRole.Leader || !_prs.TryGetValue(to, out var pr) || pr.State != ProgressState.Snapshot)
        {
            return;
        }

        if (!success)
        {
            pr.BecomeProbe();
            pr.Next = pr.Match + 1;
        }
        else
        {
            pr.BecomeProbe();
        }

        // Wait for the follower's answer (or the next heartbeat) before probing.
        pr.ProbeSent = true;
    }

    /// <summary>Metadata for a snapshot the application takes at <see cref="AppliedIndex"/> (membership as of that index).</summary>
    public SnapshotMetadata SnapshotMetadataAtApplied() =>
        new(_log.Applied, _log.Term(_log.Applied), new ConfState([.. _voters], [.. _learners]));

    /// <summary>Drops in-memory entries up to the snapshot, which the application has taken and the storage compacted to.
    /// A follower that later needs them gets this snapshot instead.</summary>
    public void Compact(SnapshotMetadata snapshot) => _log.Compact(snapshot);
}
