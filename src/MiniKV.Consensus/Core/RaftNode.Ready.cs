namespace MiniKV.Consensus.Core;

public sealed partial class RaftNode
{
    private SoftState CurrentSoft => new(Leader, Role, Term);

    private HardState CurrentHard => new(Term, Vote, _log.Committed);

    /// <summary>Whether <see cref="GetReady"/> has anything for the driver.</summary>
    public bool HasReady =>
        (_needBroadcast && Role == RaftRole.Leader)
        || _msgs.Count > 0
        || _readStates.Count > 0
        || _log.LastIndex > _log.Stable
        || _log.PendingSnapshot is not null
        || _log.HasNextCommitted
        || CurrentSoft != _prevSoft
        || CurrentHard != _prevHard;

    /// <summary>
    /// Collects the outputs (see <see cref="Ready"/> for the order the driver must follow). Call
    /// <see cref="Advance"/> with it before the next <see cref="GetReady"/>.
    /// </summary>
    public Ready GetReady()
    {
        if (_readyOutstanding)
        {
            throw new InvalidOperationException("Advance the previous Ready first");
        }

        if (_needBroadcast && Role == RaftRole.Leader)
        {
            BroadcastAppend();
        }

        _needBroadcast = false;
        var soft = CurrentSoft;
        var hard = CurrentHard;
        bool hardChanged = hard != _prevHard;
        bool termOrVote = hard.Term != _prevHard.Term || hard.VotedFor != _prevHard.VotedFor;
        var entries = _log.Unstable();
        var snapshot = _log.PendingSnapshot;
        var rd = new Ready
        {
            SoftState = soft != _prevSoft ? soft : null,
            HardState = hardChanged ? hard : null,
            Snapshot = snapshot,
            Entries = entries,
            Messages = _msgs,
            CommittedEntries = _log.HasNextCommitted ? _log.NextCommitted(_opts.MaxCommittedPerReady) : [],
            ReadStates = _readStates,
            MustSync = entries.Count > 0 || snapshot is not null || termOrVote,
            TermOrVoteChanged = termOrVote,
        };
        _prevSoft = soft;
        _msgs = [];
        _readStates = [];
        _readyOutstanding = true;
        return rd;
    }

    /// <summary>Tells the node the driver persisted, sent and applied everything in <paramref name="rd"/>.</summary>
    public void Advance(Ready rd)
    {
        _readyOutstanding = false;
        if (rd.HardState is { } hs)
        {
            _prevHard = hs;
        }

        if (rd.Snapshot is not null)
        {
            _log.SnapshotPersisted(rd.Snapshot);
        }

        if (rd.Entries.Count > 0)
        {
            var last = rd.Entries[^1];
            _log.StableTo(last.Index, last.Term);
            if (Role == RaftRole.Leader && _prs.TryGetValue(Id, out var self) && self.MaybeUpdate(_log.Stable))
            {
                MaybeCommit(); // followers learn it with the next Append or heartbeat (HandleAppendResponse)
            }
        }

        if (rd.CommittedEntries.Count > 0)
        {
            foreach (var e in rd.CommittedEntries)
            {
                if (e.Index > _log.Applied)
                {
                    _log.AppliedTo(e.Index);
                    ApplyConfEntry(e);
                }
            }
        }
    }
}
