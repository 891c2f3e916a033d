namespace MiniKV.Consensus.Core;

/// <summary>
/// Settings of one <see cref="RaftNode"/>. Times are in ticks: the node has no clock, its driver calls
/// <see cref="RaftNode.Tick"/> at a fixed interval (RaftHost: 10 ms by default).
/// </summary>
public sealed class RaftNodeOptions
{
    /// <summary>This node's id.</summary>
    public required string Id { get; init; }

    /// <summary>The shortest election timeout; each term the node draws its timeout uniformly from
    /// [<see cref="ElectionTicksMin"/>, <see cref="ElectionTicksMax"/>).</summary>
    public int ElectionTicksMin { get; init; } = 15;

    /// <summary>The (exclusive) longest election timeout.</summary>
    public int ElectionTicksMax { get; init; } = 30;

    /// <summary>How often a leader sends heartbeats; must be well below <see cref="ElectionTicksMin"/>.</summary>
    public int HeartbeatTicks { get; init; } = 3;

    /// <summary>The most payload bytes one Append message carries (at least one entry is always sent).</summary>
    public int MaxBytesPerAppend { get; init; } = 1 << 20;

    /// <summary>The most entries one Append message carries.</summary>
    public int MaxEntriesPerAppend { get; init; } = 4096;

    /// <summary>How many Append messages may be in flight (unacknowledged) to one follower in replicate state.</summary>
    public int MaxInflightAppends { get; init; } = 256;

    /// <summary>The most committed entries handed out in one <see cref="Ready"/>.</summary>
    public int MaxCommittedPerReady { get; init; } = 8192;

    /// <summary>Pre-vote (thesis §9.6): a node only increments its term once a quorum says it could win, so a
    /// node rejoining from a partition does not depose a healthy leader.</summary>
    public bool PreVote { get; init; } = true;

    /// <summary>Check-quorum: a leader that has not heard from a quorum within an election timeout steps down,
    /// and followers that heard from a leader within the minimum election timeout ignore (pre-)votes.</summary>
    public bool CheckQuorum { get; init; } = true;

    /// <summary>Leader lease reads (see RaftNode.Lease.cs for the clock assumption): a leader whose last heartbeat
    /// round a quorum echoed recently answers reads without a new round. Must be the same on every voter; needs
    /// <see cref="CheckQuorum"/>; turns off the early campaign of <see cref="RaftNode.ReportLeaderUnreachable"/>, so
    /// failover after a leader crash waits for a whole election timeout.</summary>
    public bool LeaseReads { get; init; }

    /// <summary>The randomness for election timeouts; seeded in tests so that runs replay exactly.</summary>
    public Random Random { get; init; } = new();

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrEmpty(Id);
        if (HeartbeatTicks < 1 || ElectionTicksMin <= HeartbeatTicks || ElectionTicksMax <= ElectionTicksMin)
        {
            throw new ArgumentException("need 1 <= HeartbeatTicks < ElectionTicksMin < ElectionTicksMax");
        }

        if (LeaseReads && !CheckQuorum)
        {
            throw new ArgumentException("lease reads need check-quorum");
        }

        if (MaxInflightAppends < 1 || MaxEntriesPerAppend < 1 || MaxBytesPerAppend < 1 || MaxCommittedPerReady < 1)
        {
            throw new ArgumentException("limits must be positive");
        }
    }
}
