using System.Text;
using MiniKV.Consensus.Core;

namespace MiniKV.Consensus.Tests.Simulation;

/// <summary>Fault rates of one simulation run, drawn from its seed.</summary>
internal sealed record SimFaults(double Drop, double Duplicate, double Delay, double Crash, double Partition, double MidReadyCrash, double LeaderCrash, double Stall = 0);

/// <summary>
/// A whole cluster in one thread under one seed: nodes, an in-memory network that drops, delays, duplicates
/// and reorders, crash/restart with loss of unsynced writes, partitions, stalls (a node that neither ticks nor
/// processes anything for a while, like a host in a long GC pause). Every step checks the Raft safety
/// invariants and throws <see cref="SimViolation"/> on the first broken one. The same seed replays exactly.
/// </summary>
internal sealed class SimCluster
{
    private readonly Random _rand;
    private readonly List<InFlight> _network = [];
    private readonly Dictionary<long, string> _leaderOfTerm = [];
    private readonly Dictionary<(long Index, long Term), string> _fingerprints = [];
    private readonly Dictionary<long, (long Term, string Print)> _applied = [];
    private readonly Dictionary<string, int> _group = new(StringComparer.Ordinal);
    private readonly List<(long Index, long Term, long CommittedBy)> _committed = [];
    private readonly Dictionary<string, long> _pendingReads = [];
    private long _proposalSeq;
    private long _readSeq;

    public SimCluster(int seed, int voters, int spares, SimFaults faults, int snapshotEvery, bool leaseReads = false)
    {
        Seed = seed;
        _rand = new Random(seed);
        Faults = faults;
        SnapshotEvery = snapshotEvery;
        LeaseReads = leaseReads;
        var ids = Enumerable.Range(1, voters + spares).Select(i => $"n{i}").ToList();
        var bootstrap = new ConfState(ids.Take(voters).ToList(), []);
        foreach (var id in ids)
        {
            var n = new SimNode(id, ids.IndexOf(id) < voters ? bootstrap : null, _rand.Next(), leaseReads);
            Nodes[id] = n;
            n.Start();
            _group[id] = 0;
        }
    }

    public int Seed { get; }

    public SimFaults Faults { get; }

    public int SnapshotEvery { get; }

    /// <summary>Whether every node runs with <see cref="RaftNodeOptions.LeaseReads"/>.</summary>
    public bool LeaseReads { get; }

    /// <summary>Whether a node resuming from a stall expires its lease first, as RaftHost does when it skips ticks.
    /// Only a test that shows the checker catches the missing call turns it off.</summary>
    public bool ExpireLeaseOnResume { get; init; } = true;

    public long Now { get; private set; }

    public SortedDictionary<string, SimNode> Nodes { get; } = new(StringComparer.Ordinal);

    public long ProposalsApplied { get; private set; }

    public long ReadsServed { get; private set; }

    /// <summary>Reads answered from a leader lease, summed over the nodes' lives (a crash forgets a node's count).</summary>
    public long LeaseReadsServed => _leaseReadsOfCrashed + Alive.Sum(n => n.Raft.LeaseReadsServed);

    private long _leaseReadsOfCrashed;

    public long SnapshotsInstalled { get; private set; }

    public long MembershipChanges { get; private set; }

    public long Elections => _leaderOfTerm.Count;

    private sealed record InFlight(long DeliverAt, Message Message, (long Index, Entry?[] Data)? Snapshot);

    public IEnumerable<SimNode> Alive => Nodes.Values.Where(n => n.Alive);

    /// <summary>The live nodes that are not stalled: the ones that tick, process and receive.</summary>
    private IEnumerable<SimNode> Running => Alive.Where(n => !Stalled(n));

    private bool Stalled(SimNode n) => n.StalledUntil > Now;

    public SimNode? Leader => Alive.Where(n => n.Raft.Role == RaftRole.Leader).MaxBy(n => n.Raft.Term);

    /// <summary>One tick of simulated time with faults.</summary>
    public void Round(bool chaos)
    {
        Now++;
        foreach (var n in Alive.Where(n => n.StalledUntil == Now))
        {
            // The host notices the ticks it missed before it serves anything; a read that waited out the stall is
            // the one a stale lease would answer wrongly.
            if (ExpireLeaseOnResume)
            {
                n.Raft.ExpireLease();
            }

            if (_rand.NextDouble() < 0.5)
            {
                StartRead(n);
            }
        }

        if (chaos)
        {
            InjectFaults();
        }

        foreach (var n in Running)
        {
            n.Raft.Tick();
        }

        if (_rand.NextDouble() < 0.5)
        {
            ProposeSomewhere();
        }

        if (_rand.NextDouble() < 0.05)
        {
            ReadSomewhere();
        }

        if (chaos && _rand.NextDouble() < 0.01)
        {
            ChangeMembership();
        }

        if (chaos && _rand.NextDouble() < 0.005 && Leader is { } l)
        {
            var others = l.Raft.Voters.Where(v => v != l.Id).ToList();
            if (others.Count > 0)
            {
                l.Raft.TransferLeadership(others[_rand.Next(others.Count)]);
            }
        }

        Settle(chaos);
    }

    /// <summary>Processes Readies and delivers due messages until nothing is left for this tick.</summary>
    private void Settle(bool chaos)
    {
        for (int guard = 0; guard < 10_000; guard++)
        {
            bool progress = false;
            foreach (var n in Running.ToList())
            {
                if (n.Raft.HasReady)
                {
                    ProcessReady(n, chaos);
                    progress = true;
                }
            }

            // A stalled node receives nothing until it resumes (its messages wait in the network).
            var due = _network.Where(f => f.DeliverAt <= Now && !Stalled(Nodes[f.Message.To])).ToList();
            if (due.Count > 0)
            {
                progress = true;
                foreach (var f in due)
                {
                    _network.Remove(f);
                }

                Shuffle(due);
                foreach (var f in due)
                {
                    Deliver(f);
                }
            }

            if (!progress)
            {
                return;
            }
        }

        throw new SimViolation(Seed, "the cluster did not settle within one tick (message storm)");
    }

    private void ProcessReady(SimNode n, bool chaos)
    {
        var rd = n.Raft.GetReady();
        if (rd.SoftState is { Role: RaftRole.Leader } s)
        {
            CheckNewLeader(n, s.Term);
        }

        // 0. like RaftHost: restore the (durable) state machine from a received snapshot before the log
        // forgets its entries, so a crash in between leaves a state machine ahead of the log (it skips
        // re-applied indexes), never behind a log that no longer holds what it misses.
        if (rd.Snapshot is not null)
        {
            var data = n.ReceivedSnapshot ?? throw new SimViolation(Seed, $"{n.Id}: core installed a snapshot the driver never received");
            if (data.Index != rd.Snapshot.Index)
            {
                throw new SimViolation(Seed, $"{n.Id}: snapshot data {data.Index} vs metadata {rd.Snapshot.Index}");
            }

            n.Sm.Restore(data.Index, data.Data);
            SnapshotsInstalled++;
        }

        // Like RaftHost: a leader's replication messages overlap its own disk write.
        bool early = !rd.TermOrVoteChanged;
        if (early)
        {
            foreach (var m in rd.Messages)
            {
                if (Ready.MaySendBeforeSync(m))
                {
                    Send(n, m);
                }
            }
        }

        // Like RaftHost: committed entries an earlier sync made durable are applied before this Ready's sync.
        int appliedEarly = rd.DurableCommittedCount(n.DurableIndex);
        for (int i = 0; i < appliedEarly; i++)
        {
            Apply(n, rd.CommittedEntries[i]);
        }

        // 1. persist with one sync
        if (rd.Snapshot is not null)
        {
            n.Storage.InstallSnapshot(rd.Snapshot);
        }

        if (rd.Entries.Count > 0)
        {
            n.Storage.Append(rd.Entries);
        }

        if (rd.HardState is { } hs)
        {
            n.Storage.SetHardState(hs);
        }

        if (chaos && rd.MustSync && _rand.NextDouble() < Faults.MidReadyCrash)
        {
            Crash(n);
            return;
        }

        n.Storage.Sync();
        if (rd.Snapshot is not null)
        {
            n.DurableIndex = rd.Snapshot.Index;
        }

        if (rd.Entries.Count > 0)
        {
            n.DurableIndex = rd.Entries[^1].Index;
        }

        // Only what survived the sync counts: a write lost in a crash was never seen by anyone.
        foreach (var e in rd.Entries)
        {
            RecordFingerprint(n, e);
        }

        // 2. send
        foreach (var m in rd.Messages)
        {
            if (!early || !Ready.MaySendBeforeSync(m))
            {
                Send(n, m);
            }
        }

        // 3. apply
        n.ReceivedSnapshot = null;
        for (int i = appliedEarly; i < rd.CommittedEntries.Count; i++)
        {
            Apply(n, rd.CommittedEntries[i]);
        }

        // 4. reads
        foreach (var r in rd.ReadStates)
        {
            string key = Encoding.UTF8.GetString(r.Context.Span);
            if (_pendingReads.Remove(key, out long mustSee) && r.Index < mustSee)
            {
                throw new SimViolation(Seed, $"{n.Id}: read index {r.Index} misses index {mustSee} applied before the read started");
            }

            ReadsServed++;
        }

        n.Raft.Advance(rd);
        MaybeSnapshot(n);
    }

    private void Apply(SimNode n, Entry e)
    {
        if (e.Index <= n.Sm.AppliedIndex)
        {
            if (n.Sm.Applied[(int)e.Index] is { } had && Print(had) != Print(e))
            {
                throw new SimViolation(Seed, $"{n.Id}: re-applied index {e.Index} differs from what it applied before");
            }

            return;
        }

        if (e.Index != n.Sm.AppliedIndex + 1)
        {
            throw new SimViolation(Seed, $"{n.Id}: applies {e.Index} after {n.Sm.AppliedIndex}");
        }

        string print = Print(e);
        if (_applied.TryGetValue(e.Index, out var prior))
        {
            if (prior.Term != e.Term || prior.Print != print)
            {
                throw new SimViolation(Seed, $"state machine safety: {n.Id} applies ({e.Index},{e.Term}) but ({e.Index},{prior.Term}) was applied elsewhere");
            }
        }
        else
        {
            _applied[e.Index] = (e.Term, print);
            _committed.Add((e.Index, e.Term, Nodes.Values.Max(x => x.Raft.Term)));
        }

        n.Sm.Applied.Add(e);
        if (e.Kind == EntryKind.Normal)
        {
            ProposalsApplied++;
        }
        else if (e.Kind == EntryKind.ConfChange && e.Term > 1 && prior.Print is null)
        {
            MembershipChanges++;
        }
    }

    private void MaybeSnapshot(SimNode n)
    {
        if ((SnapshotEvery <= 0 && !n.SnapshotWanted) || n.Raft.AppliedIndex != n.Sm.AppliedIndex)
        {
            return;
        }

        long last = n.Sm.Snapshot?.Index ?? 0;
        if (n.Sm.AppliedIndex - last < SnapshotEvery && !n.SnapshotWanted)
        {
            return;
        }

        n.SnapshotWanted = false;

        var meta = n.Raft.SnapshotMetadataAtApplied();
        n.Sm.Snapshot = (meta.Index, n.Sm.TakeSnapshot());
        n.Storage.Compact(meta);
        n.Storage.Sync();
        n.Raft.Compact(meta);
    }

    private void Send(SimNode from, Message m)
    {
        (long, Entry?[])? snap = null;
        if (m.Type == MessageType.Snapshot)
        {
            // Like RaftHost: the snapshot bytes must be the state machine's at exactly the metadata's index.
            if (from.Sm.Snapshot is not { } s || s.Index != m.Snapshot!.Index)
            {
                // The log's snapshot point and the state machine's last snapshot differ (a crash between
                // the two): take a fresh snapshot so the next attempt has matching bytes.
                from.SnapshotWanted = true;
                from.Raft.ReportSnapshot(m.To, success: false);
                return;
            }

            snap = s;
        }

        if (_rand.NextDouble() < Faults.Drop || !Reachable(m.From, m.To))
        {
            if (snap is not null)
            {
                from.Raft.ReportSnapshot(m.To, success: false);
            }

            return;
        }

        long delay = _rand.NextDouble() < Faults.Delay ? _rand.Next(1, 4) : 0;
        _network.Add(new InFlight(Now + delay, m, snap));
        if (_rand.NextDouble() < Faults.Duplicate)
        {
            _network.Add(new InFlight(Now + _rand.Next(0, 6), m, snap));
        }

        if (snap is not null)
        {
            // The simulated transport streams it at once; a loss is reported instead.
            from.Raft.ReportSnapshot(m.To, success: true);
        }
    }

    private void Deliver(InFlight f)
    {
        var to = Nodes[f.Message.To];
        if (!to.Alive || !Reachable(f.Message.From, f.Message.To))
        {
            return;
        }

        if (f.Snapshot is { } s)
        {
            to.ReceivedSnapshot = s;
        }

        to.Raft.Step(f.Message);
        if (f.Snapshot is not null && to.Raft.HasReady)
        {
            // Process now, while ReceivedSnapshot belongs to this message.
            ProcessReady(to, chaos: false);
        }

        to.ReceivedSnapshot = null;
    }

    private bool Reachable(string a, string b) => _group[a] == _group[b];

    private void InjectFaults()
    {
        foreach (var n in Nodes.Values)
        {
            if (n.Alive && _rand.NextDouble() < Faults.Crash)
            {
                Crash(n);
            }
            else if (!n.Alive && _rand.NextDouble() < 0.1)
            {
                n.Start();
            }
        }

        if (_rand.NextDouble() < Faults.LeaderCrash && Leader is { } leader)
        {
            // Leader crashes are what stress leader completeness and the commit rule most.
            Crash(leader);
        }

        foreach (var n in Running.ToList())
        {
            // A stalled leader is the case a lease must survive: the others elect a new one meanwhile.
            double rate = n.Raft.Role == RaftRole.Leader ? Faults.Stall * 5 : Faults.Stall;
            if (_rand.NextDouble() < rate)
            {
                n.StalledUntil = Now + _rand.Next(5, 60);
            }
        }

        // False reports: a stream to a live leader broke (or the report arrives after a restart). Must not disrupt it.
        if (_rand.NextDouble() < Faults.Partition)
        {
            var alive = Alive.ToList();
            if (alive.Count > 0 && alive[_rand.Next(alive.Count)] is { Raft.Leader: { } lead } reporter)
            {
                reporter.Raft.ReportLeaderUnreachable(lead);
            }
        }

        if (_rand.NextDouble() < Faults.Partition)
        {
            foreach (var id in Nodes.Keys)
            {
                _group[id] = _rand.NextDouble() < 0.3 ? 1 : 0;
            }
        }
        else if (_rand.NextDouble() < Faults.Partition * 2)
        {
            Heal();
        }
    }

    public void Heal()
    {
        foreach (var id in Nodes.Keys)
        {
            _group[id] = 0;
        }
    }

    public void RestartAll()
    {
        foreach (var n in Nodes.Values.Where(n => !n.Alive))
        {
            n.Start();
        }
    }

    private void Crash(SimNode n)
    {
        _leaseReadsOfCrashed += n.Raft.LeaseReadsServed;
        n.Crash();
        _network.RemoveAll(f => f.Message.To == n.Id);

        // Most of the crashed node's followers notice it through their transport (ReportLeaderUnreachable); some do
        // not, and then only their election timers help.
        foreach (var other in Nodes.Values)
        {
            if (other.Alive && _rand.NextDouble() < 0.7)
            {
                other.Raft.ReportLeaderUnreachable(n.Id);
            }
        }
    }

    private void ProposeSomewhere()
    {
        var running = Running.ToList();
        if (running.Count == 0)
        {
            return;
        }

        var n = _rand.NextDouble() < 0.8 && Leader is { } l && !Stalled(l) ? l : running[_rand.Next(running.Count)];
        n.Raft.Propose(Encoding.UTF8.GetBytes($"p{++_proposalSeq}"), Guid.Empty);
    }

    private void ReadSomewhere()
    {
        var running = Running.ToList();
        if (running.Count > 0)
        {
            StartRead(running[_rand.Next(running.Count)]);
        }
    }

    /// <summary>A linearizable read on <paramref name="n"/>: its read index must cover everything committed before now.</summary>
    private void StartRead(SimNode n)
    {
        string key = $"r{++_readSeq}";
        long mustSee = _committed.Count == 0 ? 0 : _committed.Max(c => c.Index);
        if (n.Raft.ReadIndex(Encoding.UTF8.GetBytes(key)))
        {
            _pendingReads[key] = mustSee;
        }
    }

    private void ChangeMembership()
    {
        if (Leader is not { } l)
        {
            return;
        }

        var voters = l.Raft.Voters.ToList();
        var learners = l.Raft.Learners.ToList();
        var outsiders = Nodes.Keys.Where(id => !voters.Contains(id) && !learners.Contains(id)).ToList();
        ConfChange? change = _rand.Next(3) switch
        {
            0 when outsiders.Count > 0 => new ConfChange(ConfChangeKind.AddLearner, outsiders[_rand.Next(outsiders.Count)], ""),
            1 when learners.Count > 0 => new ConfChange(ConfChangeKind.PromoteLearner, learners[_rand.Next(learners.Count)], ""),
            2 when voters.Count > 3 => new ConfChange(ConfChangeKind.Remove, voters[_rand.Next(voters.Count)], ""),
            _ => null,
        };
        if (change is not null)
        {
            l.Raft.ProposeConfChange(change);
        }
    }

    private void Shuffle<T>(List<T> list)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = _rand.Next(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }

    private static string Print(Entry e) =>
        $"{e.Kind}:{e.RequestId}:{Convert.ToHexString(e.Data.Span)}";

    /// <summary>Log matching, checked per entry: entries with the same (index, term) anywhere carry the same
    /// command and follow the same previous term, which by induction makes the whole prefixes equal.</summary>
    private void RecordFingerprint(SimNode n, Entry e)
    {
        string print = $"{Print(e)}:{n.Raft.TermAt(e.Index - 1)}";
        if (_fingerprints.TryGetValue((e.Index, e.Term), out var prior))
        {
            if (prior != print)
            {
                throw new SimViolation(Seed, $"log matching: {n.Id} has ({e.Index},{e.Term}) = {print}, elsewhere {prior}");
            }
        }
        else
        {
            _fingerprints[(e.Index, e.Term)] = print;
        }
    }

    /// <summary>Election safety and leader completeness, checked when a node becomes leader.</summary>
    private void CheckNewLeader(SimNode n, long term)
    {
        if (_leaderOfTerm.TryGetValue(term, out var other) && other != n.Id)
        {
            throw new SimViolation(Seed, $"election safety: {other} and {n.Id} both lead term {term}");
        }

        _leaderOfTerm[term] = n.Id;
        // An entry first applied while the highest term anywhere was T was committed in a term <= T, so
        // every leader of a term above T must hold it.
        foreach (var (index, t, by) in _committed)
        {
            if (term <= by || index < n.Raft.FirstIndex - 1)
            {
                continue;
            }

            long have = n.Raft.TermAt(index);
            if (have != t)
            {
                throw new SimViolation(Seed, $"leader completeness: {n.Id} leads term {term} without committed ({index},{t}) (has term {have})");
            }
        }
    }

    /// <summary>Committed entries never lost: every committed entry is in the log of every current leader.</summary>
    public void CheckLeaders()
    {
        foreach (var n in Alive.Where(n => n.Raft.Role == RaftRole.Leader))
        {
            CheckNewLeader(n, n.Raft.Term);
        }
    }

    /// <summary>Liveness: with everyone up and connected, a leader appears and a proposal commits within a bound.</summary>
    public void CheckLiveness(int maxTicks)
    {
        Heal();
        RestartAll();
        long start = Now;
        long target = -1;
        string? proposer = null;
        while (Now - start < maxTicks)
        {
            Round(chaos: false);
            var leader = Leader;
            if (leader is null)
            {
                continue;
            }

            if (target < 0 || leader.Id != proposer)
            {
                target = leader.Raft.Propose(Encoding.UTF8.GetBytes($"live{Now}"), Guid.Empty);
                proposer = leader.Id;
                continue;
            }

            if (leader.Raft.Voters.All(v => Nodes[v].Sm.AppliedIndex >= target))
            {
                return;
            }
        }

        throw new SimViolation(Seed, $"liveness: no leader committing to every voter within {maxTicks} ticks (leader {Leader?.Id}, target {target})");
    }
}

/// <summary>One simulated node: its core, its fake disk and its application.</summary>
internal sealed class SimNode(string id, ConfState? bootstrap, int seed, bool leaseReads)
{
    private readonly Random _rand = new(seed);

    public string Id { get; } = id;

    public FakeRaftStorage Storage { get; } = new();

    public SimStateMachine Sm { get; } = new();

    public RaftNode Raft { get; private set; } = null!;

    public bool Alive { get; private set; }

    public (long Index, Entry?[] Data)? ReceivedSnapshot { get; set; }

    public bool SnapshotWanted { get; set; }

    /// <summary>The last log index a sync made durable, as RaftHost tracks it.</summary>
    public long DurableIndex { get; set; }

    /// <summary>The simulated time until which this node neither ticks nor processes anything.</summary>
    public long StalledUntil { get; set; }

    public void Start()
    {
        var opts = new RaftNodeOptions
        {
            Id = Id,
            Random = new Random(_rand.Next()),
            MaxEntriesPerAppend = 8,
            MaxInflightAppends = 4,
            LeaseReads = leaseReads,
        };
        Raft = new RaftNode(opts, Storage.Load(), bootstrap);
        DurableIndex = Raft.LastIndex;
        StalledUntil = 0;
        Alive = true;
    }

    public void Crash()
    {
        Storage.Crash();
        Alive = false;
        ReceivedSnapshot = null;
    }
}

internal sealed class SimViolation(int seed, string what)
    : Exception($"seed {seed}: {what} (replay: MINIKV_RAFT_SEED={seed} dotnet test --filter ReplaySeed)")
{
    public int Seed { get; } = seed;
}
