using System.Runtime.CompilerServices;
using MiniKV.Consensus.Core;

namespace MiniKV.Consensus.Hosting;

public sealed partial class RaftHost
{
    // Everything below runs on the Raft thread only.
    private readonly Dictionary<long, Waiter> _waiters = [];
    private readonly Dictionary<Guid, long> _inLog = [];
    private readonly Dictionary<long, (ReadInput Input, TimeSpan Deadline)> _reads = [];
    private readonly List<(long Index, ReadInput Input)> _readsWaitingApply = [];
    private readonly List<(TransferInput Input, TimeSpan Deadline)> _transfers = [];
    private readonly Dictionary<string, TimeSpan> _snapshotSentAt = new(StringComparer.Ordinal);
    private readonly List<IStateMachineSnapshot> _retired = [];
    private IStateMachineSnapshot? _snapshot;
    private SnapshotInput? _incoming;
    private bool _snapshotWanted;
    private bool _reissueReads;
    private long _lastSnapshotIndex;
    // The last log index an earlier sync made durable (at start: what the log held on disk).
    private long _durableIndex;
    private long _readSeq;
    private long _syncs;
    private long _entriesPersisted;
    private long _deduplicated;
    private TimeSpan _now;
    // When the next tick is due on _clock (the Raft thread's schedule).
    private TimeSpan _nextTick;

    /// <summary>Proposers waiting for the entry at one index. More than one when a retry found its original.</summary>
    private sealed class Waiter(long term)
    {
        public long Term { get; } = term;

        public List<TaskCompletionSource<ProposalResult>> Completions { get; } = [];
    }

    private void Handle(object input)
    {
        switch (input)
        {
            case Message m:
                if (m.Type == MessageType.ReadIndex)
                {
                    GuardLease();
                }

                _node.Step(m);
                break;
            case ProposeInput p:
                Propose(p);
                break;
            case ConfInput c:
                ProposeConf(c);
                break;
            case ReadInput r:
                StartRead(r);
                break;
            case TransferInput t:
                StartTransfer(t);
                break;
            case UnreachableInput u:
                _node.ReportLeaderUnreachable(u.NodeId);
                break;
            case SnapshotInput s:
                CompleteIncomingSnapshot();
                _incoming = s;
                _node.Step(s.Message);
                while (_node.HasReady)
                {
                    ProcessReady(_node.GetReady(), _now);
                }

                CompleteIncomingSnapshot();
                break;
        }
    }

    private void Propose(ProposeInput p)
    {
        if (p.RequestId != Guid.Empty)
        {
            if (_applied.TryGet(p.RequestId, out var done))
            {
                _deduplicated++;
                p.Completion.TrySetResult(new ProposalResult(ProposalStatus.Applied, done.Index, done.Result, null));
                return;
            }

            if (_node.Role == RaftRole.Leader
                && _inLog.TryGetValue(p.RequestId, out long at)
                && _node.EntryAt(at) is { } e && e.RequestId == p.RequestId
                && at > _node.AppliedIndex)
            {
                // The original is in our log, not yet applied: wait for it rather than append a second copy.
                _deduplicated++;
                if (!_waiters.TryGetValue(at, out var w))
                {
                    w = new Waiter(e.Term);
                    _waiters[at] = w;
                }

                w.Completions.Add(p.Completion);
                return;
            }
        }

        long index = _node.Propose(p.Data, p.RequestId);
        if (index == 0)
        {
            p.Completion.TrySetResult(new ProposalResult(ProposalStatus.NotLeader, 0, null, LeaderHint()));
            return;
        }

        AddWaiter(index, p.Completion);
        if (p.RequestId != Guid.Empty)
        {
            _inLog[p.RequestId] = index;
        }
    }

    private void ProposeConf(ConfInput c)
    {
        long index = _node.ProposeConfChange(c.Change);
        if (index <= 0)
        {
            c.Completion.TrySetResult(new ProposalResult(
                index == 0 ? ProposalStatus.NotLeader : ProposalStatus.Rejected, 0, null, LeaderHint()));
            return;
        }

        if (c.Change.Kind != ConfChangeKind.Remove && c.Change.Address.Length > 0 && c.Change.NodeId != NodeId)
        {
            // Reach the new member at once so it can catch up before the change even commits.
            SetAddress(c.Change.NodeId, c.Change.Address);
            _transport.SetPeerAddress(c.Change.NodeId, c.Change.Address);
        }

        AddWaiter(index, c.Completion);
    }

    private void AddWaiter(long index, TaskCompletionSource<ProposalResult> completion)
    {
        var w = new Waiter(_node.Term);
        w.Completions.Add(completion);
        _waiters[index] = w;
    }

    private string? LeaderHint() => _node.LeadTransferee ?? _node.Leader;

    private void StartRead(ReadInput r)
    {
        if (_node.Role != RaftRole.Leader && !r.AnyMember)
        {
            r.Completion.TrySetResult(false);
            return;
        }

        long id = ++_readSeq;
        GuardLease();
        if (!_node.ReadIndex(BitConverter.GetBytes(id)))
        {
            r.Completion.TrySetResult(false); // a follower that knows no leader to ask
            return;
        }

        _reads[id] = (r, _now + _opts.RequestTimeout);
    }

    /// <summary>
    /// A read served more than one tick period after the tick now due (this thread stalled: a GC pause, a slow
    /// sync) would count on a lease whose ticks were not counted yet: the lease ends first (RaftNode.Lease.cs).
    /// </summary>
    private void GuardLease()
    {
        if (_opts.LeaseReads && _clock.Elapsed >= _nextTick + _opts.TickInterval)
        {
            _node.ExpireLease();
        }
    }

    private void StartTransfer(TransferInput t)
    {
        if (_node.Leader == t.To && _node.Role != RaftRole.Leader)
        {
            t.Completion.TrySetResult(true);
            return;
        }

        if (!_node.TransferLeadership(t.To))
        {
            t.Completion.TrySetResult(false);
            return;
        }

        _transfers.Add((t, _now + _opts.RequestTimeout));
    }

    private void OnTick(TimeSpan now)
    {
        _now = now;
        PublishHeardFrom();
        if (_reads.Count > 0)
        {
            foreach (var (id, (input, deadline)) in _reads.ToList())
            {
                if (now >= deadline)
                {
                    _reads.Remove(id);
                    input.Completion.TrySetResult(false);
                }
            }
        }

        for (int i = _transfers.Count - 1; i >= 0; i--)
        {
            var (t, deadline) = _transfers[i];
            bool abandoned = _node.Role == RaftRole.Leader && _node.LeadTransferee != t.To;
            if (now >= deadline || abandoned)
            {
                _transfers.RemoveAt(i);
                t.Completion.TrySetResult(false);
            }
        }
    }

    private void ProcessReady(Ready rd, TimeSpan now)
    {
        if (rd.SoftState is { } soft)
        {
            OnSoftState(soft);
        }

        // A received snapshot goes into the state machine before the log forgets its entries: a crash in
        // between leaves the state machine ahead of the log (it skips re-applied indexes), never behind a log
        // that no longer holds what it is missing.
        if (rd.Snapshot is { } snap)
        {
            if (_incoming is null || _incoming.Message.Snapshot?.Index != snap.Index)
            {
                throw new InvalidOperationException($"the core installs snapshot {snap.Index} that this host did not receive");
            }

            _sm.RestoreSnapshot(snap.Index, _incoming.Data);
            _storage.InstallSnapshot(snap);
            _snapshotWanted = true;
        }

        bool early = !rd.TermOrVoteChanged && rd.Messages.Count > 0;
        if (early)
        {
            foreach (var m in rd.Messages)
            {
                if (Ready.MaySendBeforeSync(m))
                {
                    Send(m, now);
                }
            }
        }

        // Entries that an earlier sync made durable are applied now, so their proposers are answered without
        // waiting for this Ready's disk write (Ready.DurableCommittedCount).
        int appliedEarly = rd.DurableCommittedCount(_durableIndex);
        if (appliedEarly > 0)
        {
            Apply(rd.CommittedEntries, 0, appliedEarly);
        }

        if (rd.Entries.Count > 0)
        {
            _storage.Append(rd.Entries);
            _entriesPersisted += rd.Entries.Count;
            foreach (var e in rd.Entries)
            {
                if (e.RequestId != Guid.Empty)
                {
                    _inLog[e.RequestId] = e.Index;
                }
            }
        }

        if (rd.HardState is { } hs)
        {
            _storage.SetHardState(hs);
        }

        if (rd.MustSync)
        {
            _storage.Sync();
            _syncs++;
        }

        if (rd.Snapshot is { } installed)
        {
            _durableIndex = installed.Index;
        }

        if (rd.Entries.Count > 0)
        {
            _durableIndex = rd.Entries[^1].Index;
        }

        foreach (var m in rd.Messages)
        {
            if (!early || !Ready.MaySendBeforeSync(m))
            {
                Send(m, now);
            }
        }

        if (rd.CommittedEntries.Count > appliedEarly)
        {
            Apply(rd.CommittedEntries, appliedEarly, rd.CommittedEntries.Count - appliedEarly);
        }

        foreach (var rs in rd.ReadStates)
        {
            if (rs.Context.Length == 8 && _reads.Remove(BitConverter.ToInt64(rs.Context.Span), out var r))
            {
                _readsWaitingApply.Add((rs.Index, r.Input));
            }
        }

        _node.Advance(rd);
        ReleaseReads();
        if (_reissueReads)
        {
            _reissueReads = false;
            ReissueReads();
        }
    }

    /// <summary>
    /// Asks for every read still waiting for its index again, under the same id: whichever answer comes first
    /// serves it, and each answer is a valid read index (confirmed by its leader after the read began).
    /// </summary>
    private void ReissueReads()
    {
        GuardLease();
        foreach (long id in _reads.Keys)
        {
            _node.ReadIndex(BitConverter.GetBytes(id));
        }
    }

    private void Send(Message m, TimeSpan now)
    {
        if (m.Type == MessageType.Snapshot)
        {
            SendSnapshot(m, now);
        }
        else
        {
            _transport.Send(m);
        }
    }

    private void OnSoftState(SoftState soft)
    {
        var previous = _leader.Value;
        var info = new LeaderInfo(soft.Leader, soft.Term, soft.Role == RaftRole.Leader);
        if (info == previous)
        {
            return;
        }

        _leader = new StrongBox<LeaderInfo>(info);
        if (previous.IsLeader && !info.IsLeader)
        {
            FailWaiters(ProposalStatus.Unknown);
            FailReads();
        }
        else if (info.LeaderId is not null && (info.LeaderId != previous.LeaderId || info.Term != previous.Term))
        {
            // A follower's reads were forwarded to the leader it knew; a new leader never heard of them, and the old
            // one drops them when it steps down. Ask the new one (after this Ready) instead of waiting for the timeout.
            _reissueReads = _reads.Count > 0;
        }

        for (int i = _transfers.Count - 1; i >= 0; i--)
        {
            if (_transfers[i].Input.To == soft.Leader)
            {
                _transfers[i].Input.Completion.TrySetResult(true);
                _transfers.RemoveAt(i);
            }
        }

        if (LeaderChanged is { } handler)
        {
            ThreadPool.QueueUserWorkItem(_ => handler(info));
        }
    }

    private void SendSnapshot(Message m, TimeSpan now)
    {
        var snap = _snapshot;
        if (snap is null || snap.Index != m.Snapshot!.Index)
        {
            // The log was compacted to a point the state machine's last snapshot does not match (a restart
            // between the two): take a fresh one; the core retries with it on the follower's next heartbeat.
            _snapshotWanted = true;
            _node.ReportSnapshot(m.To, success: false);
            return;
        }

        if (_snapshotSentAt.TryGetValue(m.To, out var at) && now - at < _opts.SnapshotResendInterval)
        {
            _node.ReportSnapshot(m.To, success: false);
            return;
        }

        _snapshotSentAt[m.To] = now;
        _transport.Send(m, snap);

        // The transport does not report the stream's end; the follower's answer after installing moves it
        // back to replication, and a lost stream is retried after SnapshotResendInterval.
        _node.ReportSnapshot(m.To, success: true);
    }

    private void Apply(IReadOnlyList<Entry> committed, int start, int count)
    {
        long smApplied = _sm.AppliedIndex;
        List<Entry>? batch = null;
        for (int i = start; i < start + count; i++)
        {
            var e = committed[i];
            if (e.Index > smApplied)
            {
                (batch ??= new List<Entry>(count)).Add(e);
            }
            else
            {
                // Applied before a restart: its result is gone, but a retry must still not apply it twice.
                Completed(e, null);
            }
        }

        if (batch is null)
        {
            return;
        }

        var results = _sm.Apply(batch);
        for (int i = 0; i < batch.Count; i++)
        {
            Completed(batch[i], i < results.Count ? results[i] : null);
        }
    }

    private void Completed(Entry e, object? result)
    {
        if (e.Kind == EntryKind.ConfChange && ConfChangeCodec.TryDecode(e.Data.Span) is { } change)
        {
            OnMembershipApplied(change);
        }

        if (e.RequestId != Guid.Empty)
        {
            _inLog.Remove(e.RequestId);
            _applied.Add(e.RequestId, e.Index, result);
        }

        if (_waiters.Remove(e.Index, out var w))
        {
            var outcome = w.Term == e.Term
                ? new ProposalResult(ProposalStatus.Applied, e.Index, result, null)
                : new ProposalResult(ProposalStatus.Unknown, 0, null, LeaderHint());
            foreach (var c in w.Completions)
            {
                c.TrySetResult(outcome);
            }
        }
    }

    private void OnMembershipApplied(ConfChange change)
    {
        if (change.Kind == ConfChangeKind.Remove)
        {
            RemoveAddress(change.NodeId);
            if (change.NodeId != NodeId)
            {
                _transport.RemovePeer(change.NodeId);
            }
        }
        else if (change.Address.Length > 0)
        {
            SetAddress(change.NodeId, change.Address);
            if (change.NodeId != NodeId)
            {
                _transport.SetPeerAddress(change.NodeId, change.Address);
            }
        }
    }

    private void ReleaseReads()
    {
        if (_readsWaitingApply.Count == 0)
        {
            return;
        }

        long applied = _sm.AppliedIndex;
        _readsWaitingApply.RemoveAll(r =>
        {
            if (r.Index > applied)
            {
                return false;
            }

            r.Input.Completion.TrySetResult(true);
            return true;
        });
    }

    private void MaybeSnapshot()
    {
        long applied = _sm.AppliedIndex;
        if (_node.AppliedIndex != applied || applied == 0)
        {
            return;
        }

        if (!_snapshotWanted && applied - _lastSnapshotIndex < _opts.SnapshotEveryEntries)
        {
            return;
        }

        _snapshotWanted = false;
        var meta = _node.SnapshotMetadataAtApplied();
        var snap = _sm.CreateSnapshot();
        if (snap.Index != meta.Index)
        {
            snap.Dispose();
            return;
        }

        _storage.Compact(meta);
        _storage.Sync();
        _syncs++;
        _node.Compact(meta);
        _lastSnapshotIndex = meta.Index;
        if (_snapshot is not null)
        {
            // The transport may still stream the previous one; keep a couple before disposing.
            _retired.Add(_snapshot);
            if (_retired.Count > 2)
            {
                _retired[0].Dispose();
                _retired.RemoveAt(0);
            }
        }

        _snapshot = snap;
    }

    private void CompleteIncomingSnapshot()
    {
        if (_incoming is { } s)
        {
            _incoming = null;
            s.Data.Dispose();
            s.Completion.TrySetResult();
        }
    }

    private void SeedDedup(IReadOnlyList<Entry> entries)
    {
        long smApplied = _sm.AppliedIndex;
        foreach (var e in entries)
        {
            if (e.RequestId == Guid.Empty)
            {
                continue;
            }

            if (e.Index <= smApplied)
            {
                _applied.Add(e.RequestId, e.Index, null);
            }
            else
            {
                _inLog[e.RequestId] = e.Index;
            }
        }
    }

    private void FailWaiters(ProposalStatus status)
    {
        foreach (var w in _waiters.Values)
        {
            foreach (var c in w.Completions)
            {
                c.TrySetResult(new ProposalResult(status, 0, null, LeaderHint()));
            }
        }

        _waiters.Clear();
    }

    private void FailReads()
    {
        foreach (var (input, _) in _reads.Values)
        {
            input.Completion.TrySetResult(false);
        }

        _reads.Clear();
        foreach (var (_, input) in _readsWaitingApply)
        {
            input.Completion.TrySetResult(false);
        }

        _readsWaitingApply.Clear();
    }

    private void FailTransfers()
    {
        foreach (var (t, _) in _transfers)
        {
            t.Completion.TrySetResult(false);
        }

        _transfers.Clear();
    }

    private void DisposeSnapshots()
    {
        foreach (var s in _retired)
        {
            s.Dispose();
        }

        _retired.Clear();
        _snapshot?.Dispose();
        _snapshot = null;
    }
}
