namespace MiniKV.Consensus.Core;

/// <summary>
/// The node's view of its log: every entry after the last snapshot, held in memory (the metadata log is
/// compacted every few thousand entries, and <see cref="IRaftStorage"/> has no read path besides Load).
/// Tracks what is persisted (<see cref="Stable"/>), committed, and handed out for applying.
/// </summary>
internal sealed class RaftLog
{
    private readonly List<Entry> _entries = [];

    public RaftLog(SnapshotMetadata? snapshot, IReadOnlyList<Entry> entries, long commit)
    {
        SnapshotIndex = snapshot?.Index ?? 0;
        SnapshotTerm = snapshot?.Term ?? 0;
        Snapshot = snapshot;
        long expect = SnapshotIndex + 1;
        foreach (var e in entries)
        {
            if (e.Index <= SnapshotIndex)
            {
                // Storage compacts whole files, so it may still hold entries the snapshot covers.
                continue;
            }

            if (e.Index != expect)
            {
                throw new InvalidOperationException($"log is not contiguous: expected index {expect}, found {e.Index}");
            }

            _entries.Add(e);
            expect++;
        }

        Stable = LastIndex;
        Committed = Math.Max(Math.Min(commit, LastIndex), SnapshotIndex);
        Applied = SnapshotIndex;
    }

    public long SnapshotIndex { get; private set; }

    public long SnapshotTerm { get; private set; }

    /// <summary>The snapshot the log starts after (compaction point or installed), or null.</summary>
    public SnapshotMetadata? Snapshot { get; private set; }

    /// <summary>A snapshot received from the leader that is not yet persisted.</summary>
    public SnapshotMetadata? PendingSnapshot { get; private set; }

    public long Committed { get; private set; }

    /// <summary>The highest index handed out to the application for applying.</summary>
    public long Applied { get; private set; }

    /// <summary>The highest index known durable.</summary>
    public long Stable { get; private set; }

    public long FirstIndex => SnapshotIndex + 1;

    public long LastIndex => SnapshotIndex + _entries.Count;

    public long LastTerm => _entries.Count == 0 ? SnapshotTerm : _entries[^1].Term;

    /// <summary>The term of the entry at <paramref name="index"/>, or -1 when compacted or beyond the end.</summary>
    public long Term(long index)
    {
        if (index == SnapshotIndex)
        {
            return SnapshotTerm;
        }

        if (index < SnapshotIndex || index > LastIndex)
        {
            return -1;
        }

        return _entries[(int)(index - SnapshotIndex - 1)].Term;
    }

    public Entry? At(long index) =>
        index <= SnapshotIndex || index > LastIndex ? null : _entries[(int)(index - SnapshotIndex - 1)];

    public bool MatchTerm(long index, long term) => Term(index) == term;

    /// <summary>Raft's election restriction: is a log ending at (lastIndex, lastTerm) at least as up to date as ours?</summary>
    public bool IsUpToDate(long lastIndex, long lastTerm) =>
        lastTerm > LastTerm || (lastTerm == LastTerm && lastIndex >= LastIndex);

    /// <summary>Follower side of Append: returns the last index of the new entries, or -1 when the log does
    /// not contain (prevIndex, prevTerm).</summary>
    public long MaybeAppend(long prevIndex, long prevTerm, long leaderCommit, IReadOnlyList<Entry> entries)
    {
        if (!MatchTerm(prevIndex, prevTerm))
        {
            return -1;
        }

        long lastNew = prevIndex + entries.Count;
        int skip = 0;
        for (; skip < entries.Count; skip++)
        {
            var e = entries[skip];
            if (e.Index <= SnapshotIndex)
            {
                continue;
            }

            if (!MatchTerm(e.Index, e.Term))
            {
                break;
            }
        }

        if (skip < entries.Count)
        {
            long conflict = entries[skip].Index;
            if (conflict <= Committed)
            {
                throw new InvalidOperationException($"entry {conflict} conflicts with committed entry (commit {Committed})");
            }

            TruncateAndAppend(entries, skip);
        }

        CommitTo(Math.Min(leaderCommit, lastNew));
        return lastNew;
    }

    /// <summary>Leader side: appends entries that continue the log.</summary>
    public void Append(Entry entry)
    {
        if (entry.Index != LastIndex + 1)
        {
            throw new InvalidOperationException($"append at {entry.Index} after last index {LastIndex}");
        }

        _entries.Add(entry);
    }

    private void TruncateAndAppend(IReadOnlyList<Entry> entries, int from)
    {
        long first = entries[from].Index;
        if (first <= LastIndex)
        {
            _entries.RemoveRange((int)(first - SnapshotIndex - 1), (int)(LastIndex - first + 1));
            Stable = Math.Min(Stable, first - 1);
        }

        for (int i = from; i < entries.Count; i++)
        {
            _entries.Add(entries[i]);
        }
    }

    /// <summary>
    /// Where a leader should probe next after a rejection: the largest index ≤ <paramref name="index"/> whose
    /// term is ≤ <paramref name="term"/> (etcd's findConflictByTerm). Every entry in between has a term the
    /// other log cannot match, so one round trip skips a whole term instead of one entry.
    /// </summary>
    public (long Index, long Term) FindConflictByTerm(long index, long term)
    {
        index = Math.Min(index, LastIndex);
        while (index > SnapshotIndex)
        {
            long t = Term(index);
            if (t <= term)
            {
                return (index, t);
            }

            index--;
        }

        return (index, Term(index) < 0 ? 0 : Term(index));
    }

    public void CommitTo(long index)
    {
        if (index > Committed)
        {
            if (index > LastIndex)
            {
                throw new InvalidOperationException($"commit {index} beyond last index {LastIndex}");
            }

            Committed = index;
        }
    }

    /// <summary>Committed entries not yet handed out, at most <paramref name="max"/>.</summary>
    public List<Entry> NextCommitted(int max)
    {
        var list = new List<Entry>((int)Math.Min(max, Committed - Applied));
        for (long i = Applied + 1; i <= Committed && list.Count < max; i++)
        {
            list.Add(At(i)!);
        }

        return list;
    }

    public bool HasNextCommitted => Committed > Applied && PendingSnapshot is null;

    public void AppliedTo(long index)
    {
        if (index > Committed || index < Applied)
        {
            throw new InvalidOperationException($"applied {index} outside [{Applied}, {Committed}]");
        }

        Applied = index;
    }

    public List<Entry> Unstable()
    {
        var list = new List<Entry>((int)(LastIndex - Stable));
        for (long i = Math.Max(Stable, SnapshotIndex) + 1; i <= LastIndex; i++)
        {
            list.Add(At(i)!);
        }

        return list;
    }

    public void StableTo(long index, long term)
    {
        if (index > Stable && MatchTerm(index, term))
        {
            Stable = index;
        }
    }

    public void SnapshotPersisted(SnapshotMetadata snapshot)
    {
        if (ReferenceEquals(PendingSnapshot, snapshot))
        {
            PendingSnapshot = null;
        }
    }

    /// <summary>Entries in [lo, hi], stopping at <paramref name="maxBytes"/> (at least one entry) or
    /// <paramref name="maxCount"/>; null when lo is compacted.</summary>
    public List<Entry>? Slice(long lo, long hi, int maxBytes, int maxCount)
    {
        if (lo <= SnapshotIndex)
        {
            return null;
        }

        var list = new List<Entry>();
        long bytes = 0;
        for (long i = lo; i <= hi && list.Count < maxCount; i++)
        {
            var e = At(i)!;
            bytes += e.Data.Length + 32;
            if (list.Count > 0 && bytes > maxBytes)
            {
                break;
            }

            list.Add(e);
        }

        return list;
    }

    /// <summary>Replaces the log with a snapshot received from the leader (not yet persisted).</summary>
    public void Restore(SnapshotMetadata snapshot)
    {
        _entries.Clear();
        SnapshotIndex = snapshot.Index;
        SnapshotTerm = snapshot.Term;
        Snapshot = snapshot;
        PendingSnapshot = snapshot;
        Committed = snapshot.Index;
        Applied = snapshot.Index;
        Stable = snapshot.Index;
    }

    /// <summary>Drops entries up to the snapshot's index after the application snapshotted its state there.</summary>
    public void Compact(SnapshotMetadata snapshot)
    {
        if (snapshot.Index <= SnapshotIndex)
        {
            return;
        }

        if (snapshot.Index > Applied || snapshot.Index > Stable)
        {
            throw new InvalidOperationException($"compact to {snapshot.Index} beyond applied {Applied} / stable {Stable}");
        }

        _entries.RemoveRange(0, (int)(snapshot.Index - SnapshotIndex));
        SnapshotIndex = snapshot.Index;
        SnapshotTerm = snapshot.Term;
        Snapshot = snapshot;
    }
}
