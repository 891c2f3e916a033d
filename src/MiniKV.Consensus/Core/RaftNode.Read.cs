namespace MiniKV.Consensus.Core;

public sealed partial class RaftNode
{
    private readonly List<PendingRead> _pendingReads = [];
    private readonly List<(string? From, ReadOnlyMemory<byte> Context)> _readsBeforeFirstCommit = [];
    // The last heartbeat round sent: followers echo it, and a read waits for a quorum to echo a round sent after it came.
    private long _round;
    // The last round sent to every follower (a tick's heartbeat, or a read round that asked all after a stall).
    private long _broadcastRound;
    // The voters a read round goes to, reused: (the last round each echoed, its id, its progress), best first.
    private readonly List<(long Echoed, string Id, Progress Progress)> _readRoundTargets = [];

    private readonly record struct PendingRead(long Seq, long Index, string? From, ReadOnlyMemory<byte> Context, long Tick);

    /// <summary>
    /// Requests a linearizable read index (thesis §6.4). The leader records its commit index, confirms it still
    /// leads with a round of heartbeats acknowledged by a quorum, then yields a <see cref="ReadState"/> with
    /// <paramref name="context"/>; with <see cref="RaftNodeOptions.LeaseReads"/> a leader holding its lease yields it at
    /// once (RaftNode.Lease.cs). A follower forwards the request to its leader. Returns false when there is no
    /// leader to ask; the request is silently dropped if leadership changes meanwhile (the driver times out).
    /// </summary>
    public bool ReadIndex(ReadOnlyMemory<byte> context)
    {
        if (Role == RaftRole.Leader)
        {
            LeaderReadIndex(null, context);
            return true;
        }

        if (Leader is null)
        {
            return false;
        }

        Send(Msg(MessageType.ReadIndex, Leader) with { Context = context });
        return true;
    }

    private void LeaderReadIndex(string? from, ReadOnlyMemory<byte> context)
    {
        if (_voters.Count == 1 && _voters.Contains(Id))
        {
            Respond(new PendingRead(0, _log.Committed, from, context, _ticks));
            return;
        }

        if (_log.Term(_log.Committed) != Term)
        {
            // Until an entry of this term commits, this leader's commit index may be behind the cluster's.
            _readsBeforeFirstCommit.Add((from, context));
            return;
        }

        if (HoldsLease)
        {
            LeaseReadsServed++;
            Respond(new PendingRead(0, _log.Committed, from, context, _ticks));
            return;
        }

        SendReadRound();
        _pendingReads.Add(new PendingRead(_round, _log.Committed, from, context, _ticks));
    }

    /// <summary>
    /// Sends a new heartbeat round to just enough voters to make a quorum with this leader, not to every follower:
    /// any quorum's echo proves the leadership, and on a 3-node cluster this halves the read traffic (each round costs
    /// a follower a gRPC message in, a Raft-thread wake-up and a message out). The ones asked are those that echoed
    /// the latest round, which answer soonest; one that has stopped answering falls behind the others at the next
    /// round that reaches everyone (a tick's heartbeat, or <see cref="RetryStalledReads"/>), and is not asked again.
    /// </summary>
    private void SendReadRound()
    {
        int needed = Quorum - (_voters.Contains(Id) ? 1 : 0);
        _readRoundTargets.Clear();
        foreach (var v in _voters)
        {
            if (v != Id && _prs.TryGetValue(v, out var pr))
            {
                _readRoundTargets.Add((pr.ReadAck, v, pr));
            }
        }

        if (needed >= _readRoundTargets.Count)
        {
            BroadcastHeartbeat();
            return;
        }

        // Highest echo first; ties in id order, so a test can tell which voters are asked.
        _readRoundTargets.Sort((a, b) => a.Echoed != b.Echoed ? b.Echoed.CompareTo(a.Echoed) : string.CompareOrdinal(a.Id, b.Id));
        long round = NextRound();
        ReadOnlyMemory<byte> ctx = BitConverter.GetBytes(round);
        for (int i = 0; i < needed; i++)
        {
            var (_, id, pr) = _readRoundTargets[i];
            SendHeartbeat(id, pr, ctx);
        }
    }

    /// <summary>
    /// Called every leader tick: when the oldest waiting read has had a full tick for its round to be echoed and no
    /// round has gone to everyone since, one of the voters it asked is slow or gone; ask everyone now rather than
    /// wait for the next heartbeat.
    /// </summary>
    private void RetryStalledReads()
    {
        if (_pendingReads.Count > 0 && _pendingReads[0].Seq > _broadcastRound && _ticks - _pendingReads[0].Tick >= 2)
        {
            BroadcastHeartbeat();
        }
    }

    private void OnCommittedInTerm()
    {
        if (_readsBeforeFirstCommit.Count == 0)
        {
            return;
        }

        var waiting = _readsBeforeFirstCommit.ToArray();
        _readsBeforeFirstCommit.Clear();
        foreach (var (from, ctx) in waiting)
        {
            LeaderReadIndex(from, ctx);
        }
    }

    private void ReleaseReads()
    {
        int released = 0;
        while (released < _pendingReads.Count)
        {
            long seq = _pendingReads[released].Seq;
            int acks = 0;
            foreach (var v in _voters)
            {
                if (v == Id || (_prs.TryGetValue(v, out var pr) && pr.ReadAck >= seq))
                {
                    acks++;
                }
            }

            if (acks < Quorum)
            {
                break;
            }

            Respond(_pendingReads[released]);
            released++;
        }

        _pendingReads.RemoveRange(0, released);
    }

    private void Respond(PendingRead r)
    {
        if (r.From is null || r.From == Id)
        {
            _readStates.Add(new ReadState(r.Index, r.Context));
        }
        else
        {
            Send(Msg(MessageType.ReadIndexResponse, r.From) with { Index = r.Index, Context = r.Context });
            // The follower waits to apply up to the read index: tell it the commit now rather than with the next heartbeat.
            TellCommit(r.From);
        }
    }

    private void ResetReads()
    {
        _pendingReads.Clear();
        _readsBeforeFirstCommit.Clear();
    }
}
