namespace MiniKV.Consensus.Core;

/// <summary>How a leader currently replicates to one follower.</summary>
public enum ProgressState : byte
{
    /// <summary>The follower's match point is unknown: one Append at a time until one is accepted.</summary>
    Probe = 1,

    /// <summary>The follower accepts: Appends are pipelined, up to the in-flight window.</summary>
    Replicate = 2,

    /// <summary>The follower needs a snapshot; nothing else is sent until it is reported done or failed.</summary>
    Snapshot = 3,
}

/// <summary>A leader's view of one member's log (etcd's tracker.Progress).</summary>
internal sealed class Progress
{
    public Progress(long next, int maxInflight, bool isLearner)
    {
        Next = next;
        Inflights = new Inflights(maxInflight);
        IsLearner = isLearner;
    }

    public long Match { get; set; }

    public long Next { get; set; }

    public ProgressState State { get; private set; } = ProgressState.Probe;

    /// <summary>In probe state: an Append was sent and no answer has come yet.</summary>
    public bool ProbeSent { get; set; }

    public long PendingSnapshot { get; private set; }

    /// <summary>Heard from within the current check-quorum period.</summary>
    public bool RecentActive { get; set; }

    /// <summary>The leader's tick count when this member last sent it anything.</summary>
    public long LastHeardTick { get; set; }

    public bool IsLearner { get; set; }

    public Inflights Inflights { get; }

    /// <summary>The highest read-index sequence number this member has echoed in a heartbeat response.</summary>
    public long ReadAck { get; set; }

    /// <summary>The highest commit index this member has been told (by an Append or a heartbeat) that it can use.</summary>
    public long CommitSent { get; set; }

    public bool IsPaused => State switch
    {
        ProgressState.Probe => ProbeSent,
        ProgressState.Replicate => Inflights.Full,
        _ => true,
    };

    public void BecomeProbe()
    {
        if (State == ProgressState.Snapshot)
        {
            long pending = PendingSnapshot;
            Reset(ProgressState.Probe);
            Next = Math.Max(Match + 1, pending + 1);
        }
        else
        {
            Reset(ProgressState.Probe);
            Next = Match + 1;
        }
    }

    public void BecomeReplicate()
    {
        Reset(ProgressState.Replicate);
        Next = Match + 1;
    }

    public void BecomeSnapshot(long snapshotIndex)
    {
        Reset(ProgressState.Snapshot);
        PendingSnapshot = snapshotIndex;
    }

    private void Reset(ProgressState state)
    {
        ProbeSent = false;
        PendingSnapshot = 0;
        State = state;
        Inflights.Reset();
    }

    /// <summary>The follower accepted up to <paramref name="n"/>; false if that is old news.</summary>
    public bool MaybeUpdate(long n)
    {
        bool updated = false;
        if (Match < n)
        {
            Match = n;
            updated = true;
            ProbeSent = false;
        }

        Next = Math.Max(Next, n + 1);
        return updated;
    }

    /// <summary>
    /// The follower rejected an Append after <paramref name="rejected"/>, hinting that its log matches at most
    /// up to <paramref name="matchHint"/>. Returns false when the rejection is stale (out of order).
    /// </summary>
    public bool MaybeDecrTo(long rejected, long matchHint)
    {
        if (State == ProgressState.Replicate)
        {
            if (rejected <= Match)
            {
                return false;
            }

            Next = Match + 1;
            return true;
        }

        if (Next - 1 != rejected)
        {
            return false;
        }

        Next = Math.Max(Math.Min(rejected, matchHint + 1), Match + 1);
        ProbeSent = false;
        return true;
    }
}

/// <summary>The last index of each Append in flight to one follower, oldest first (a ring buffer).</summary>
internal sealed class Inflights
{
    private readonly long[] _buffer;
    private int _start;

    public Inflights(int capacity) => _buffer = new long[capacity];

    public int Count { get; private set; }

    public bool Full => Count == _buffer.Length;

    public void Add(long lastIndex)
    {
        if (Full)
        {
            throw new InvalidOperationException("in-flight window is full");
        }

        _buffer[(_start + Count) % _buffer.Length] = lastIndex;
        Count++;
    }

    /// <summary>Frees every in-flight Append whose last index is ≤ <paramref name="index"/>.</summary>
    public void FreeLE(long index)
    {
        while (Count > 0 && _buffer[_start] <= index)
        {
            _start = (_start + 1) % _buffer.Length;
            Count--;
        }
    }

    public void FreeFirst()
    {
        if (Count > 0)
        {
            _start = (_start + 1) % _buffer.Length;
            Count--;
        }
    }

    public void Reset()
    {
        _start = 0;
        Count = 0;
    }
}
