using MiniKV.Consensus.Core;

namespace MiniKV.Consensus.Hosting;

/// <summary>Settings of a <see cref="RaftHost"/>.</summary>
public sealed class RaftHostOptions
{
    /// <summary>This node's id.</summary>
    public required string NodeId { get; init; }

    /// <summary>
    /// The founding membership, used only when storage is empty: every founding member must be given the same
    /// voters. A node joining a running cluster leaves this null and is added by a membership change.
    /// </summary>
    public ConfState? InitialMembers { get; init; }

    /// <summary>Raft (gRPC) addresses of known peers (from --peers); membership changes add more.</summary>
    public IReadOnlyDictionary<string, string> PeerAddresses { get; init; } = new Dictionary<string, string>();

    /// <summary>The logical clock's period. Default 10 ms.</summary>
    public TimeSpan TickInterval { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Election timeouts are drawn uniformly from [min, max). Default 150–300 ms, the range the
    /// failover target (median ≤ 200 ms after a leader dies) was set for; raise both on slow disks.</summary>
    public TimeSpan ElectionTimeoutMin { get; init; } = TimeSpan.FromMilliseconds(150);

    /// <summary>See <see cref="ElectionTimeoutMin"/>.</summary>
    public TimeSpan ElectionTimeoutMax { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>How often a leader sends heartbeats. Default 50 ms (three per minimum election timeout).</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>Leader lease reads: a leader answers ReadBarrier without a heartbeat round while a quorum's recent
    /// echo keeps its lease (RaftNode.Lease.cs states the clock assumption). Set it on every member or on none.
    /// It turns off the early campaign on a broken leader stream, so failover waits a whole election timeout.</summary>
    public bool LeaseReads { get; init; }

    /// <summary>
    /// How long the Raft thread spins (in <see cref="SpinWait"/> steps, mostly yields) for new input before it sleeps.
    /// Default 0: it sleeps at once. 200 helped RaftBench's three nodes alone on this 2-core machine (ReadIndex p50
    /// 0.83 / 0.98 ms against 1.07 / 1.03, 256 proposers 39.0K / 37.3K commits/s against 35.1K / 34.1K), but with 200
    /// an in-process failover test took 5.6 s in a CI run. The likely cause: when other threads keep both cores busy,
    /// every yield waits out their time slice, one pass of the loop stretches far past its tick, and logical time slows
    /// (at most two ticks per pass).
    /// A spin bounded in time rather than in yields would be needed to make it the default (docs/benchmarks.md).
    /// </summary>
    public int WakeSpinCount { get; init; }

    /// <summary>Take a state machine snapshot and compact the log every this many applied entries.</summary>
    public int SnapshotEveryEntries { get; init; } = 20_000;

    /// <summary>How many applied request ids are remembered for deduplication, at least (up to twice as many).</summary>
    public int DedupWindow { get; init; } = 100_000;

    /// <summary>
    /// Of those, how many keep the state machine's result for a retry to receive, at least (up to twice as many); a retry
    /// of an older id gets its index and a null result, as after a restart. Results are object graphs: held for the
    /// whole <see cref="DedupWindow"/> they made every applied entry survive into the oldest GC generation.
    /// </summary>
    public int DedupResultWindow { get; init; } = 1_024;

    /// <summary>How long a ReadBarrier or a transfer waits before answering false.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>A snapshot handed to the transport is not re-sent to the same peer within this interval
    /// (the transport does not report when a stream finishes).</summary>
    public TimeSpan SnapshotResendInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Where a snapshot received from the leader is written in full before the node installs it (see
    /// <see cref="RaftHost.OnSnapshotAsync"/>); null for the system's temporary directory. Put it on the data disk:
    /// a snapshot is as large as the state machine.
    /// </summary>
    public string? SnapshotStagingDirectory { get; init; }

    /// <summary>Seed for election-timeout randomness; null for a random seed.</summary>
    public int? Seed { get; init; }

    /// <summary>Core limits (batching, pipelining window).</summary>
    public int MaxBytesPerAppend { get; init; } = 1 << 20;

    public int MaxEntriesPerAppend { get; init; } = 4096;

    public int MaxInflightAppends { get; init; } = 256;

    internal RaftNodeOptions ToNodeOptions()
    {
        int Ticks(TimeSpan t) => Math.Max(1, (int)Math.Round(t / TickInterval));
        return new RaftNodeOptions
        {
            Id = NodeId,
            ElectionTicksMin = Ticks(ElectionTimeoutMin),
            ElectionTicksMax = Math.Max(Ticks(ElectionTimeoutMax), Ticks(ElectionTimeoutMin) + 1),
            HeartbeatTicks = Ticks(HeartbeatInterval),
            MaxBytesPerAppend = MaxBytesPerAppend,
            MaxEntriesPerAppend = MaxEntriesPerAppend,
            MaxInflightAppends = MaxInflightAppends,
            LeaseReads = LeaseReads,
            Random = Seed is { } s ? new Random(s) : new Random(),
        };
    }
}

/// <summary>What a node reports about itself (for /metrics and /admin/status).</summary>
public sealed record RaftStatus(
    string NodeId,
    RaftRole Role,
    long Term,
    string? Leader,
    long CommitIndex,
    long AppliedIndex,
    long LastIndex,
    long SnapshotIndex,
    IReadOnlyList<(string NodeId, string Address, bool IsVoter)> Members,
    long Syncs,
    long EntriesPersisted,
    long ProposalsDeduplicated,
    long LeaseReadsServed);
