namespace MiniKV.Consensus.Core;

public sealed partial class RaftNode
{
    /// <summary>Feeds a message from another node.</summary>
    public void Step(Message m)
    {
        if (m.To != Id)
        {
            return;
        }

        if (m.Term > Term)
        {
            if (m.Type is MessageType.Vote or MessageType.PreVote)
            {
                bool force = m.Context.Length == 1 && m.Context.Span[0] == TransferContext[0];
                bool inLease = _opts.CheckQuorum
                    && ((Leader is not null && _electionElapsed < _opts.ElectionTicksMin) || InStartupLease);
                if (!force && inLease)
                {
                    // We heard from a leader recently: this candidate is the partitioned one, not the leader.
                    return;
                }
            }

            if (m.Type == MessageType.PreVote || (m.Type == MessageType.PreVoteResponse && !m.Reject))
            {
                // A pre-vote carries the term the candidate would use; it does not move ours.
            }
            else if (m.Type is MessageType.Append or MessageType.Heartbeat or MessageType.Snapshot)
            {
                BecomeFollower(m.Term, m.From);
            }
            else
            {
                BecomeFollower(m.Term, null);
            }
        }
        else if (m.Term < Term)
        {
            if ((_opts.CheckQuorum || _opts.PreVote) && m.Type is MessageType.Append or MessageType.Heartbeat)
            {
                // Tell a stale leader our term so it steps down (it may have been cut off while we moved on).
                Send(Msg(MessageType.AppendResponse, m.From));
            }
            else if (m.Type == MessageType.PreVote)
            {
                Send(Msg(MessageType.PreVoteResponse, m.From) with { Reject = true });
            }

            return;
        }

        switch (m.Type)
        {
            case MessageType.Vote:
            case MessageType.PreVote:
                HandleVoteRequest(m);
                return;
        }

        switch (Role)
        {
            case RaftRole.Leader:
                StepLeader(m);
                break;
            case RaftRole.Candidate:
            case RaftRole.PreCandidate:
                StepCandidate(m);
                break;
            default:
                StepFollower(m);
                break;
        }
    }

    private void HandleVoteRequest(Message m)
    {
        bool canVote = Vote == m.From
            || (Vote is null && Leader is null)
            || (m.Type == MessageType.PreVote && m.Term > Term);
        var respType = m.Type == MessageType.Vote ? MessageType.VoteResponse : MessageType.PreVoteResponse;
        if (canVote && _log.IsUpToDate(m.Index, m.LogTerm) && !YieldsToMe(m))
        {
            // A granted pre-vote answers in the candidate's future term so the candidate counts it.
            Send(new Message { Type = respType, From = Id, To = m.From, Term = m.Term });
            if (m.Type == MessageType.Vote)
            {
                _electionElapsed = 0;
                Vote = m.From;
            }
        }
        else
        {
            Send(new Message { Type = respType, From = Id, To = m.From, Term = Term, Reject = true });
            if (YieldsToMe(m))
            {
                // The rival campaigns, so its lease is over: our own pre-vote, which it may have ignored while its
                // lease held, is worth asking again now rather than after a whole election timeout.
                Send(new Message { Type = MessageType.PreVote, From = Id, To = m.From, Term = Term + 1, Index = _log.LastIndex, LogTerm = _log.LastTerm });
            }
        }
    }

    /// <summary>
    /// Two pre-candidates that ask for the same next term within one round trip would grant each other, both go on to
    /// a real election, and split the vote (a whole election timeout lost). Between two such rivals the one with the
    /// more up-to-date log, else the lower id, is the one granted. A withheld pre-vote never affects safety; the
    /// loser keeps its timer and campaigns again if the winner does not follow through.
    /// </summary>
    private bool YieldsToMe(Message m) =>
        m.Type == MessageType.PreVote && Role == RaftRole.PreCandidate && m.Term == Term + 1
        && m.LogTerm == _log.LastTerm && m.Index == _log.LastIndex && string.CompareOrdinal(m.From, Id) > 0;

    private void StepCandidate(Message m)
    {
        var mine = Role == RaftRole.PreCandidate ? MessageType.PreVoteResponse : MessageType.VoteResponse;
        switch (m.Type)
        {
            case MessageType.Append:
                BecomeFollower(m.Term, m.From);
                HandleAppend(m);
                break;
            case MessageType.Heartbeat:
                BecomeFollower(m.Term, m.From);
                HandleHeartbeat(m);
                break;
            case MessageType.Snapshot:
                BecomeFollower(m.Term, m.From);
                HandleSnapshot(m);
                break;
            case var t when t == mine:
                switch (Poll(m.From, !m.Reject))
                {
                    case VoteResult.Won:
                        if (Role == RaftRole.PreCandidate)
                        {
                            Campaign(preVote: false, transfer: false);
                        }
                        else
                        {
                            BecomeLeader();
                        }

                        break;
                    case VoteResult.Lost:
                        BecomeFollower(Term, null);
                        break;
                }

                break;
        }
    }

    private void StepFollower(Message m)
    {
        switch (m.Type)
        {
            case MessageType.Append:
                _electionElapsed = 0;
                Leader = m.From;
                HandleAppend(m);
                break;
            case MessageType.Heartbeat:
                _electionElapsed = 0;
                Leader = m.From;
                HandleHeartbeat(m);
                break;
            case MessageType.Snapshot:
                _electionElapsed = 0;
                Leader = m.From;
                HandleSnapshot(m);
                break;
            case MessageType.TimeoutNow:
                Campaign(preVote: false, transfer: true);
                break;
            case MessageType.ReadIndexResponse:
                _readStates.Add(new ReadState(m.Index, m.Context));
                break;
        }
    }

    private void HandleAppend(Message m)
    {
        if (m.Index < _log.Committed)
        {
            Send(Msg(MessageType.AppendResponse, m.From) with { Index = _log.Committed });
            return;
        }

        long lastNew = _log.MaybeAppend(m.Index, m.LogTerm, m.Commit, m.Entries);
        if (lastNew >= 0)
        {
            Send(Msg(MessageType.AppendResponse, m.From) with { Index = lastNew });
            return;
        }

        // Reject with a hint: the last index whose term is ≤ the leader's term at m.Index, so the leader can
        // skip every entry of a term it does not share in one round trip.
        var (hintIndex, hintTerm) = _log.FindConflictByTerm(Math.Min(m.Index, _log.LastIndex), m.LogTerm);
        Send(Msg(MessageType.AppendResponse, m.From) with
        {
            Index = m.Index,
            Reject = true,
            RejectHint = hintIndex,
            LogTerm = hintTerm,
        });
    }

    private void HandleHeartbeat(Message m)
    {
        _log.CommitTo(m.Commit);
        Send(Msg(MessageType.HeartbeatResponse, m.From) with { Context = m.Context });
    }

    private void HandleSnapshot(Message m)
    {
        var s = m.Snapshot!;
        if (s.Index <= _log.Committed)
        {
            Send(Msg(MessageType.AppendResponse, m.From) with { Index = _log.Committed });
            return;
        }

        if (_log.MatchTerm(s.Index, s.Term))
        {
            // We already have the snapshot's last entry: only the commit index was behind.
            _log.CommitTo(s.Index);
            Send(Msg(MessageType.AppendResponse, m.From) with { Index = _log.Committed });
            return;
        }

        _log.Restore(s);
        SetConf(s.Conf);
        _confIndex = s.Index;
        Send(Msg(MessageType.AppendResponse, m.From) with { Index = _log.LastIndex });
    }

    private void SetConf(ConfState conf)
    {
        _voters.Clear();
        _learners.Clear();
        foreach (var v in conf.Voters)
        {
            _voters.Add(v);
        }

        foreach (var l in conf.Learners)
        {
            _learners.Add(l);
        }
    }
}
