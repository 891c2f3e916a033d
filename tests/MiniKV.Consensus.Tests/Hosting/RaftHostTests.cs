using System.Diagnostics;
using System.Text;
using MiniKV.Consensus.Core;
using MiniKV.Consensus.Hosting;

namespace MiniKV.Consensus.Tests.Hosting;

public sealed class RaftHostTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);
    private readonly FakeRaftNetwork _net = new();
    private readonly Dictionary<string, RaftHost?> _hosts = [];
    private readonly Dictionary<string, FakeRaftStorage> _storage = [];
    private readonly Dictionary<string, FakeStateMachine> _sms = [];
    private static readonly string[] Ids = ["n1", "n2", "n3"];
    private int _snapshotEvery = 20_000;
    private bool _leaseReads;
    private TimeSpan _snapshotResendInterval = TimeSpan.FromSeconds(10);

    public Task InitializeAsync()
    {
        foreach (var id in Ids)
        {
            _storage[id] = new FakeRaftStorage();
            _sms[id] = new FakeStateMachine();
        }

        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var h in _hosts.Values)
        {
            if (h is not null)
            {
                await h.DisposeAsync();
            }
        }
    }

    private void StartAll()
    {
        foreach (var id in Ids)
        {
            Start(id);
        }
    }

    private RaftHost Start(string id)
    {
        var host = new RaftHost(
            new RaftHostOptions
            {
                NodeId = id,
                InitialMembers = new ConfState(Ids, []),
                PeerAddresses = Ids.ToDictionary(i => i, i => $"addr-{i}"),
                SnapshotEveryEntries = _snapshotEvery,
                SnapshotResendInterval = _snapshotResendInterval,
                LeaseReads = _leaseReads,
                Seed = id.GetHashCode(StringComparison.Ordinal),
            },
            _storage[id],
            new FakeRaftTransport(_net),
            _sms[id]);
        _net.Register(id, host);
        _hosts[id] = host;
        host.Start();
        return host;
    }

    private async Task KillAsync(string id)
    {
        _net.Cut(id);
        await _hosts[id]!.DisposeAsync();
        _hosts[id] = null;
        _storage[id].Crash();
    }

    private async Task<RaftHost> WaitForLeaderAsync(string? not = null)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < Patience)
        {
            foreach (var h in _hosts.Values)
            {
                if (h is not null && h.NodeId != not && h.Leader.IsLeader)
                {
                    return h;
                }
            }

            await Task.Delay(5);
        }

        throw new TimeoutException("no leader elected");
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > Patience)
            {
                throw new TimeoutException(what);
            }

            await Task.Delay(5);
        }
    }

    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    private async Task<(RaftHost Leader, RaftHost Follower)> StartWithAFollowerThatKnowsTheLeaderAsync()
    {
        StartAll();
        var leader = await WaitForLeaderAsync();
        var follower = _hosts.Values.First(h => h != leader)!;
        await WaitUntilAsync(() => follower.Leader.LeaderId == leader.NodeId, "the follower knows the leader");
        return (leader, follower);
    }

    [Fact]
    public async Task ConcurrentProposalsCommitAndEveryNodeAppliesEachOnce()
    {
        StartAll();
        var leader = await WaitForLeaderAsync();
        var ids = Enumerable.Range(0, 500).Select(_ => Guid.NewGuid()).ToArray();
        var results = await Task.WhenAll(ids.Select((g, i) => leader.ProposeAsync(B($"c{i}"), g, CancellationToken.None)));
        Assert.All(results, r => Assert.Equal(ProposalStatus.Applied, r.Status));
        Assert.Equal(results.Select(r => r.Index), results.Select(r => (long)r.Result!));
        long last = results.Max(r => r.Index);
        await WaitUntilAsync(() => Ids.All(id => _sms[id].AppliedIndex >= last), "followers apply");
        foreach (var id in Ids)
        {
            var cmds = _sms[id].Commands;
            Assert.Equal(500, cmds.Count);
            Assert.Equal(500, cmds.Select(c => c.RequestId).Distinct().Count());
        }

        Assert.Equal(_sms["n1"].Commands, _sms["n2"].Commands);
        Assert.Equal(_sms["n1"].Commands, _sms["n3"].Commands);

        // Group commit: far fewer syncs than proposals on the leader.
        Assert.True(leader.Status.Syncs < 500, $"leader synced {leader.Status.Syncs} times for 500 proposals");
    }

    [Theory]
    [InlineData(0.001, 1)]
    [InlineData(0.999, 1)]
    [InlineData(1.0, 1)]
    [InlineData(1.2, 2)]
    [InlineData(9.5, 10)]
    public void TheWaitForTheNextTickRoundsUpToWholeMillisecondsAndIsNeverZero(double milliseconds, int expected)
    {
        // An event wait takes whole milliseconds; a TimeSpan under one truncated to a zero wait, and the Raft thread
        // spun through the last millisecond before every tick.
        Assert.Equal(expected, RaftHost.WaitMilliseconds(TimeSpan.FromMilliseconds(milliseconds)));
    }

    [Fact]
    public async Task FollowerSaysNotLeaderWithAHint()
    {
        StartAll();
        var leader = await WaitForLeaderAsync();
        await WaitUntilAsync(() => _hosts.Values.All(h => h!.Leader.LeaderId == leader.NodeId), "all know the leader");
        var follower = _hosts.Values.First(h => h != leader)!;
        var r = await follower.ProposeAsync(B("x"), Guid.NewGuid(), CancellationToken.None);
        Assert.Equal(ProposalStatus.NotLeader, r.Status);
        Assert.Equal(leader.NodeId, r.LeaderHint);
    }

    [Fact]
    public async Task LeaderKillElectsAnotherAndTheRestartedNodeCatchesUp()
    {
        StartAll();
        var first = await WaitForLeaderAsync();
        for (int i = 0; i < 50; i++)
        {
            Assert.Equal(ProposalStatus.Applied, (await first.ProposeAsync(B($"a{i}"), Guid.NewGuid(), CancellationToken.None)).Status);
        }

        string dead = first.NodeId;
        var sw = Stopwatch.StartNew();
        await KillAsync(dead);
        var second = await WaitForLeaderAsync(not: dead);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"failover took {sw.Elapsed}");
        for (int i = 0; i < 50; i++)
        {
            Assert.Equal(ProposalStatus.Applied, (await second.ProposeAsync(B($"b{i}"), Guid.NewGuid(), CancellationToken.None)).Status);
        }

        _net.Heal(dead);
        Start(dead);
        long target = second.Status.CommitIndex;
        await WaitUntilAsync(() => _sms[dead].AppliedIndex >= target, "restarted node catches up");
        var cmds = _sms[dead].Commands;
        Assert.Equal(100, cmds.Count);
        Assert.Equal(_sms[second.NodeId].Commands.Take(100), cmds);
    }

    [Fact]
    public async Task ReadBarrierOnTheLeaderOnlyAndAfterPriorWritesAreApplied()
    {
        StartAll();
        var leader = await WaitForLeaderAsync();
        var w = await leader.ProposeAsync(B("w"), Guid.NewGuid(), CancellationToken.None);
        Assert.True(await leader.ReadBarrierAsync(CancellationToken.None));
        Assert.True(_sms[leader.NodeId].AppliedIndex >= w.Index);
        var follower = _hosts.Values.First(h => h != leader)!;
        Assert.False(await follower.ReadBarrierAsync(CancellationToken.None));

        // Cut off, the leader cannot confirm its leadership: the barrier answers false.
        foreach (var id in Ids.Where(i => i != leader.NodeId))
        {
            _net.Cut(id);
        }

        Assert.False(await leader.ReadBarrierAsync(CancellationToken.None));
    }

    [Fact]
    public async Task WithLeaseReadsTheLeaderAnswersBarriersFromItsLeaseAndStillSeesEveryWrite()
    {
        _leaseReads = true;
        StartAll();
        var leader = await WaitForLeaderAsync();
        for (int round = 0; round < 50; round++)
        {
            var w = await leader.ProposeAsync(B($"l{round}"), Guid.NewGuid(), CancellationToken.None);
            Assert.Equal(ProposalStatus.Applied, w.Status);
            Assert.True(await leader.ReadBarrierAsync(CancellationToken.None));
            Assert.True(_sms[leader.NodeId].AppliedIndex >= w.Index);
        }

        await WaitUntilAsync(() => leader.Status.LeaseReadsServed > 0, "a barrier answered from the lease");

        // Cut off, the leader's lease runs out and it steps down; no barrier is answered after that.
        foreach (var id in Ids.Where(i => i != leader.NodeId))
        {
            _net.Cut(id);
        }

        await WaitUntilAsync(() => !leader.Leader.IsLeader, "the cut-off leader steps down");
        Assert.False(await leader.ReadBarrierAsync(CancellationToken.None));
    }

    [Fact]
    public async Task AFollowerReadLostWithItsLeaderIsAskedOfTheNextLeader()
    {
        var (leader, follower) = await StartWithAFollowerThatKnowsTheLeaderAsync();
        var w = await leader.ProposeAsync(B("before"), Guid.NewGuid(), CancellationToken.None);

        // The read goes to a leader that is already cut off; only the next leader can answer it, within the
        // barrier's 2 s timeout (before, it waited out the timeout and answered false).
        _net.Cut(leader.NodeId);
        var read = follower.ReadBarrierOnAnyMemberAsync(CancellationToken.None);
        Assert.True(await read);
        Assert.NotEqual(leader.NodeId, follower.Leader.LeaderId);
        Assert.True(_sms[follower.NodeId].AppliedIndex >= w.Index);
    }

    [Fact]
    public async Task FollowerReadBarrierAsksTheLeaderAndWaitsUntilAppliedLocally()
    {
        var (leader, follower) = await StartWithAFollowerThatKnowsTheLeaderAsync();
        for (int round = 0; round < 20; round++)
        {
            var w = await leader.ProposeAsync(B($"r{round}"), Guid.NewGuid(), CancellationToken.None);
            Assert.Equal(ProposalStatus.Applied, w.Status);
            // The write is acknowledged: a barrier begun now must leave the follower's state at or after it.
            Assert.True(await follower.ReadBarrierOnAnyMemberAsync(CancellationToken.None));
            Assert.True(_sms[follower.NodeId].AppliedIndex >= w.Index, $"round {round}: applied {_sms[follower.NodeId].AppliedIndex} < write {w.Index}");
        }

        Assert.True(await leader.ReadBarrierOnAnyMemberAsync(CancellationToken.None));

        // Cut off from the leader, the follower gets no read index: the barrier answers false (after its timeout).
        _net.Cut(follower.NodeId);
        Assert.False(await follower.ReadBarrierOnAnyMemberAsync(CancellationToken.None));
    }

    [Fact]
    public async Task RetriedRequestIdIsAppliedOnce()
    {
        StartAll();
        var leader = await WaitForLeaderAsync();
        var id = Guid.NewGuid();
        var concurrent = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => leader.ProposeAsync(B("once"), id, CancellationToken.None)));
        var again = await leader.ProposeAsync(B("once"), id, CancellationToken.None);
        Assert.All(concurrent, r => Assert.Equal(ProposalStatus.Applied, r.Status));
        Assert.Single(concurrent.Select(r => r.Index).Append(again.Index).Distinct());
        Assert.Single(_sms[leader.NodeId].Commands, c => c.RequestId == id);
        Assert.True(leader.Status.ProposalsDeduplicated >= 5);
    }

    [Fact]
    public async Task TransferMovesLeadership()
    {
        StartAll();
        var leader = await WaitForLeaderAsync();
        await leader.ProposeAsync(B("x"), Guid.NewGuid(), CancellationToken.None);
        string target = Ids.First(i => i != leader.NodeId);
        Assert.True(await leader.TransferLeadershipAsync(target, CancellationToken.None));
        await WaitUntilAsync(() => _hosts[target]!.Leader.IsLeader, "target leads");
    }

    /// <summary>120 entries applied while one follower was cut off, and the leader's log compacted past them: the
    /// follower (still cut off) can catch up only from a snapshot.</summary>
    private async Task<(RaftHost Leader, string Lagging)> StartWithAFollowerThatNeedsASnapshotAsync()
    {
        _snapshotEvery = 30;
        StartAll();
        var leader = await WaitForLeaderAsync();
        string lagging = Ids.First(i => i != leader.NodeId);
        _net.Cut(lagging);
        for (int i = 0; i < 120; i++)
        {
            Assert.Equal(ProposalStatus.Applied, (await leader.ProposeAsync(B($"s{i}"), Guid.NewGuid(), CancellationToken.None)).Status);
        }

        await WaitUntilAsync(() => leader.Status.SnapshotIndex > 0, "leader compacts");
        return (leader, lagging);
    }

    [Fact]
    public async Task LaggingFollowerCatchesUpFromASnapshot()
    {
        var (leader, lagging) = await StartWithAFollowerThatNeedsASnapshotAsync();
        _net.Heal(lagging);
        long target = leader.Status.CommitIndex;
        await WaitUntilAsync(() => _sms[lagging].AppliedIndex >= target, "lagging node catches up");
        Assert.Equal(_sms[leader.NodeId].Commands.Take(120), _sms[lagging].Commands.Take(120));
        Assert.True(_sms[lagging].Restores > 0, "caught up by entries, not by the snapshot");
        Assert.Equal(RaftRole.Follower, _hosts[lagging]!.Status.Role);
    }

    [Fact]
    public async Task ASnapshotStreamThatBreaksHalfwayChangesNothingAndTheNextOneIsInstalled()
    {
        _snapshotResendInterval = TimeSpan.FromMilliseconds(300);
        var (leader, lagging) = await StartWithAFollowerThatNeedsASnapshotAsync();
        _net.BreakSnapshots = true;
        _net.Heal(lagging);
        var laggingHost = _hosts[lagging]!;
        await WaitUntilAsync(() => _net.BrokenSnapshotsRefused > 0 || laggingHost.Stopped.IsCompleted, "the follower refuses a broken snapshot stream");
        if (laggingHost.Stopped.IsCompleted)
        {
            Assert.Fail("the follower's Raft loop stopped: " + await laggingHost.Stopped);
        }

        Assert.Equal(0, _sms[lagging].Restores); // nothing of the broken snapshot reached the state machine

        // The leader sends the snapshot again once its resend interval has passed.
        _net.BreakSnapshots = false;
        long target = leader.Status.CommitIndex;
        await WaitUntilAsync(() => _sms[lagging].AppliedIndex >= target, "lagging node catches up");
        Assert.Equal(_sms[leader.NodeId].Commands.Take(120), _sms[lagging].Commands.Take(120));
        Assert.True(_sms[lagging].Restores > 0, "caught up by entries, not by the snapshot");
    }
}
