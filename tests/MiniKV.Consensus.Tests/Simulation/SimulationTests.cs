using System.Diagnostics;
using Xunit.Abstractions;

namespace MiniKV.Consensus.Tests.Simulation;

/// <summary>
/// Randomized whole-cluster runs. The default run covers a few thousand seeds; MINIKV_HEAVY=1 raises it
/// (MINIKV_RAFT_SEEDS sets the count, MINIKV_RAFT_SEED_START the first seed). A failure names its seed;
/// MINIKV_RAFT_SEED=n replays exactly that run through <see cref="ReplaySeed"/>.
/// </summary>
public sealed class SimulationTests(ITestOutputHelper output)
{
    internal const int ChaosRounds = 300;
    internal const int LivenessTicks = 400;

    internal static SimCluster Run(int seed)
    {
        var r = new Random(seed);
        var faults = new SimFaults(
            Drop: r.NextDouble() * 0.15,
            Duplicate: r.NextDouble() * 0.05,
            Delay: r.NextDouble() * 0.3,
            Crash: r.NextDouble() * 0.01,
            Partition: r.NextDouble() * 0.02,
            MidReadyCrash: r.NextDouble() * 0.01,
            LeaderCrash: r.NextDouble() * 0.03,
            Stall: r.NextDouble() * 0.005);
        int voters = r.Next(3) switch { 0 => 1, 1 => 3, _ => 5 };
        int spares = r.Next(3);
        int snapshotEvery = r.Next(2) == 0 ? 0 : r.Next(5, 60);
        var c = new SimCluster(seed, voters, spares, faults, snapshotEvery, leaseReads: r.Next(2) == 0);
        return Drive(c);
    }

    private static SimCluster Drive(SimCluster c)
    {
        for (int i = 0; i < ChaosRounds; i++)
        {
            c.Round(chaos: true);
            c.CheckLeaders();
        }

        c.CheckLiveness(LivenessTicks);
        c.CheckLeaders();
        return c;
    }

    [Fact]
    public void ManySeedsKeepEveryInvariant()
    {
        bool heavy = Environment.GetEnvironmentVariable("MINIKV_HEAVY") == "1";
        int count = int.TryParse(Environment.GetEnvironmentVariable("MINIKV_RAFT_SEEDS"), out int n) ? n : heavy ? 200_000 : 1200;
        int start = int.TryParse(Environment.GetEnvironmentVariable("MINIKV_RAFT_SEED_START"), out int s) ? s : 1;
        var sw = Stopwatch.StartNew();
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        long applied = 0, reads = 0, leaseReads = 0, elections = 0, snapshots = 0, changes = 0;
        Parallel.For(start, start + count, new ParallelOptions { MaxDegreeOfParallelism = 2 }, (seed, state) =>
        {
            try
            {
                var c = Run(seed);
                Interlocked.Add(ref applied, c.ProposalsApplied);
                Interlocked.Add(ref reads, c.ReadsServed);
                Interlocked.Add(ref leaseReads, c.LeaseReadsServed);
                Interlocked.Add(ref elections, c.Elections);
                Interlocked.Add(ref snapshots, c.SnapshotsInstalled);
                Interlocked.Add(ref changes, c.MembershipChanges);
            }
            catch (Exception e)
            {
                failures.Add($"seed {seed}: {e.Message}\n{e.StackTrace}");
                state.Stop();
            }
        });
        output.WriteLine($"{count} seeds from {start} in {sw.Elapsed.TotalSeconds:F1} s: {applied} proposals applied, {reads} reads ({leaseReads} from a lease), {elections} elected terms, {snapshots} snapshots installed, {changes} membership changes");
        Assert.True(failures.IsEmpty, string.Join("\n\n", failures.Take(3)));
    }

    /// <summary>Lease reads under stalled leaders, lost and delayed messages: every read still sees every earlier commit.</summary>
    [Fact]
    public void LeaseReadsSurviveStalledLeaders()
    {
        long leaseReads = 0, reads = 0;
        for (int seed = 1; seed <= 300; seed++)
        {
            var c = Drive(new SimCluster(seed, voters: seed % 2 == 0 ? 3 : 5, spares: 0, StallFaults, snapshotEvery: 0, leaseReads: true));
            leaseReads += c.LeaseReadsServed;
            reads += c.ReadsServed;
        }

        output.WriteLine($"300 seeds: {reads} reads served, {leaseReads} of them from a lease");
        Assert.True(leaseReads > reads / 4, "the lease was hardly ever used");
    }

    private static readonly SimFaults StallFaults = new(Drop: 0.02, Duplicate: 0.01, Delay: 0.1, Crash: 0.002, Partition: 0.005, MidReadyCrash: 0, LeaderCrash: 0.005, Stall: 0.01);

    /// <summary>
    /// The checker can see a broken lease: with the driver's half of the lease rule left out (a node resuming from a
    /// stall serves reads before it expires its lease), lease-read clusters with stalled leaders serve stale reads.
    /// </summary>
    [Fact]
    public void StaleLeaseReadsAreCaught()
    {
        int caught = 0, seeds = 0;
        for (int seed = 1; seed <= 300 && caught == 0; seed++, seeds++)
        {
            var c = new SimCluster(seed, voters: seed % 2 == 0 ? 3 : 5, spares: 0, StallFaults, snapshotEvery: 0, leaseReads: true) { ExpireLeaseOnResume = false };
            try
            {
                Drive(c);
            }
            catch (SimViolation e) when (e.Message.Contains("misses index", StringComparison.Ordinal))
            {
                output.WriteLine(e.Message);
                caught++;
            }
        }

        output.WriteLine($"{seeds} seeds run, {caught} stale read caught");
        Assert.True(caught > 0, "no stale lease read was detected without ExpireLease");
    }

    [Fact]
    public void ReplaySeed()
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("MINIKV_RAFT_SEED"), out int s) ? s : 42;
        var c = Run(seed);
        output.WriteLine($"seed {seed}: {c.ProposalsApplied} proposals applied, {c.ReadsServed} reads, {c.Elections} elected terms");
        Assert.True(c.ProposalsApplied > 0);
    }

    [Fact]
    public void SameSeedReplaysExactly()
    {
        var a = Run(7);
        var b = Run(7);
        Assert.Equal(a.Now, b.Now);
        Assert.Equal(a.ProposalsApplied, b.ProposalsApplied);
        Assert.Equal(a.Elections, b.Elections);
        foreach (var id in a.Nodes.Keys)
        {
            Assert.Equal(a.Nodes[id].Sm.AppliedIndex, b.Nodes[id].Sm.AppliedIndex);
        }
    }
}
