using System.Text;
using MiniKV.Consensus.Core;

namespace MiniKV.Consensus.Tests.Core;

public sealed class RaftNodeTests
{
    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public void ElectsLeaderAndCommitsProposalsOnEveryNode()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        long index = leader.Propose(B("x"), Guid.NewGuid());
        Assert.True(index > 0);
        c.Pump();
        Assert.Contains(c.Applied["n1"], e => e.Index == index && e.Data.Span.SequenceEqual(B("x")));

        // The followers learn the new commit index with the next Append or heartbeat (every 3 ticks here).
        c.Tick(3);
        foreach (var id in c.Nodes.Keys)
        {
            Assert.Contains(c.Applied[id], e => e.Index == index && e.Data.Span.SequenceEqual(B("x")));
        }
    }

    [Fact]
    public void ANewCommitIndexRidesOnTheNextAppendOrHeartbeatNotOnAnEmptyAppend()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        c.Tick(3);
        c.Delivered.Clear();
        var indexes = new List<long>();
        for (int i = 0; i < 5; i++)
        {
            indexes.Add(leader.Propose(B($"p{i}"), Guid.Empty));
            c.Pump();
            Assert.Equal(indexes[^1], leader.CommitIndex);
        }

        // One Append per proposal and follower, each with its entry and the commit index of the one before.
        var appends = c.Delivered.Where(m => m.Type == MessageType.Append).ToList();
        Assert.Equal(10, appends.Count);
        Assert.All(appends, m => Assert.Single(m.Entries));
        Assert.All(appends, m => Assert.Equal(m.Index, m.Commit));
        foreach (var follower in new[] { "n2", "n3" })
        {
            Assert.Equal(indexes[..4], c.Applied[follower].Where(e => e.Kind == EntryKind.Normal).Select(e => e.Index));
        }

        // When no Append follows, the next heartbeat carries the last commit index.
        c.Tick(3);
        Assert.Contains(c.Delivered, m => m.Type == MessageType.Heartbeat && m.Commit == indexes[^1]);
        foreach (var follower in new[] { "n2", "n3" })
        {
            Assert.Equal(indexes, c.Applied[follower].Where(e => e.Kind == EntryKind.Normal).Select(e => e.Index));
        }

        Assert.DoesNotContain(c.Delivered, m => m.Type == MessageType.Append && m.Entries.Count == 0);
    }

    [Fact]
    public void AFollowerThatAnAcknowledgementAlreadySentTheNewEntriesGetsNoEmptyAppend()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        c.Tick(3);
        long first = leader.Propose(B("p1"), Guid.Empty);
        var rd = leader.GetReady();
        Assert.Equal(2, rd.Messages.Count(m => m.Type == MessageType.Append)); // p1 in flight to n2 and n3, not delivered
        c.Storage["n1"].Append(rd.Entries);
        c.Storage["n1"].Sync();
        leader.Advance(rd);

        // p2 is proposed, then n2's acknowledgement of p1 is handled before the next Ready: it sends n2 p2 at once.
        long second = leader.Propose(B("p2"), Guid.Empty);
        leader.Step(new Message { Type = MessageType.AppendResponse, From = "n2", To = "n1", Term = leader.Term, Index = first });
        rd = leader.GetReady();
        var toN2 = rd.Messages.Where(m => m.To == "n2" && m.Type == MessageType.Append).ToList();
        Assert.Equal(second, Assert.Single(Assert.Single(toN2).Entries).Index);
        var toN3 = rd.Messages.Where(m => m.To == "n3" && m.Type == MessageType.Append).ToList();
        Assert.Equal(second, Assert.Single(Assert.Single(toN3).Entries).Index);
    }

    [Fact]
    public void ProposalsBeforeOneReadyGoOutInOneAppendPerFollower()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        c.Delivered.Clear();
        for (int i = 0; i < 100; i++)
        {
            leader.Propose(B($"p{i}"), Guid.Empty);
        }

        var rd = leader.GetReady();
        Assert.Equal(100, rd.Entries.Count);
        var appends = rd.Messages.Where(m => m.Type == MessageType.Append).ToList();
        Assert.Equal(2, appends.Count);
        Assert.All(appends, m => Assert.Equal(100, m.Entries.Count));
        Assert.True(rd.MustSync);
    }

    [Fact]
    public void FollowerAckIsEmittedOnlyWithTheEntriesItDependsOn()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        leader.Propose(B("x"), Guid.Empty);
        var rd = leader.GetReady();
        leader.Advance(rd);
        var append = rd.Messages.First(m => m.To == "n2" && m.Type == MessageType.Append);
        var follower = c.Nodes["n2"];
        follower.Step(append);
        var frd = follower.GetReady();

        // The acknowledgement and the entries it acknowledges come out together: the driver must persist
        // frd.Entries before sending frd.Messages.
        Assert.Contains(frd.Messages, m => m.Type == MessageType.AppendResponse && !m.Reject);
        Assert.Single(frd.Entries);
        Assert.True(frd.MustSync);
    }

    /// <summary>Three nodes, n1 elected and heard once, then cut off from the others (as if killed).</summary>
    private static (ManualCluster Cluster, long Term) ClusterWhoseLeaderN1IsCutOff()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        c.Tick(1);
        c.Cut.Add("n1");
        return (c, leader.Term);
    }

    [Fact]
    public void ALeaderHearsFromLiveMembersOnlyAndAFollowerFromItsLeaderOnly()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        c.Tick(1);
        Assert.All(["n1", "n2", "n3"], id => Assert.True(leader.HeardRecentlyFrom(id), id));
        c.Cut.Add("n3");
        c.Tick(new RaftNodeOptions { Id = "n1" }.ElectionTicksMin + 1); // the default ManualCluster uses
        Assert.Equal(RaftRole.Leader, leader.Role); // n2 still answers: the quorum holds
        Assert.True(leader.HeardRecentlyFrom("n1"));
        Assert.True(leader.HeardRecentlyFrom("n2"));
        Assert.False(leader.HeardRecentlyFrom("n3"));
        Assert.True(c.Nodes["n2"].HeardRecentlyFrom("n1"));
        Assert.False(c.Nodes["n2"].HeardRecentlyFrom("n3"));
    }

    [Fact]
    public void FollowersThatLoseTheLeadersConnectionElectAnotherWithinAHeartbeatInterval()
    {
        var (c, term) = ClusterWhoseLeaderN1IsCutOff();
        c.Nodes["n2"].ReportLeaderUnreachable("n1");
        c.Nodes["n3"].ReportLeaderUnreachable("n1");

        // Without the reports nobody campaigns before ElectionTicksMin (15) ticks.
        c.Tick(4);
        var next = c.Leader;
        Assert.NotNull(next);
        // The survivors fire in id order, a heartbeat interval apart: n2 campaigns alone and wins the first election
        // (no split vote, which would have cost a whole election timeout and a second term).
        Assert.Equal("n2", next!.Id);
        Assert.Equal(term + 1, next.Term);
    }

    [Fact]
    public void TwoPreCandidatesForTheSameTermDoNotSplitTheVote()
    {
        var (c, term) = ClusterWhoseLeaderN1IsCutOff();
        c.Nodes["n2"].ReportLeaderUnreachable("n1"); // ends their leases, so each answers the other's pre-vote
        c.Nodes["n3"].ReportLeaderUnreachable("n1");
        c.Nodes["n3"].Campaign();
        c.Nodes["n2"].Campaign(); // both pre-campaign before either hears from the other
        c.Pump();

        // Granting each other would make both real candidates for term+1, each voting for itself: a split vote.
        Assert.Equal(RaftRole.Leader, c.Nodes["n2"].Role);
        Assert.Equal(term + 1, c.Nodes["n2"].Term);
        Assert.Equal(RaftRole.Follower, c.Nodes["n3"].Role);
        Assert.Equal(term + 1, c.Nodes["n3"].Term);
    }

    [Fact]
    public void APreVoteIgnoredUnderALeaseIsAskedAgainWhenTheRivalCampaigns()
    {
        var (c, term) = ClusterWhoseLeaderN1IsCutOff();
        c.Nodes["n2"].ReportLeaderUnreachable("n1");
        c.Nodes["n2"].Campaign();
        c.Pump(); // n3 still trusts n1 (its lease holds) and ignores the pre-vote
        Assert.Equal(RaftRole.PreCandidate, c.Nodes["n2"].Role);

        c.Nodes["n3"].ReportLeaderUnreachable("n1");
        c.Nodes["n3"].Campaign();
        c.Pump(); // no tick: n2 must not wait out an election timeout

        Assert.Equal(RaftRole.Leader, c.Nodes["n2"].Role);
        Assert.Equal(term + 1, c.Nodes["n2"].Term);
        Assert.Equal(term + 1, c.Nodes["n3"].Term);
    }

    [Fact]
    public void AFalseUnreachableReportDoesNotDisruptALiveLeader()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        long term = leader.Term;
        c.Tick(1);
        c.Nodes["n2"].ReportLeaderUnreachable("n1");
        c.Nodes["n3"].ReportLeaderUnreachable("n2"); // not its leader: ignored
        c.Tick(60);
        Assert.Equal(RaftRole.Leader, leader.Role);
        Assert.Equal(term, leader.Term);
        Assert.All(c.Nodes.Values, n => Assert.Equal(term, n.Term));
    }

    [Fact]
    public void PreVoteKeepsAPartitionedNodeFromDisruptingTheLeader()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        long term = leader.Term;
        c.Cut.Add("n3");
        c.Tick(200);
        Assert.Equal(term, c.Nodes["n3"].Term);
        c.Cut.Clear();
        c.Tick(50);
        Assert.Equal(RaftRole.Leader, leader.Role);
        Assert.Equal(term, leader.Term);
        Assert.Equal(term, c.Nodes["n3"].Term);
    }

    [Fact]
    public void LeaderThatLosesItsQuorumStepsDownAndTheMajorityElectsAnother()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        c.Cut.Add("n1");
        c.Tick(40);
        Assert.NotEqual(RaftRole.Leader, leader.Role);
        var next = c.Leader;
        Assert.NotNull(next);
        Assert.NotEqual("n1", next!.Id);
        Assert.Equal(0, leader.Propose(B("late"), Guid.Empty));
    }

    [Fact]
    public void RejectHintsSkipAWholeDivergentTermInOneRoundTrip()
    {
        List<Entry> Bootstrap() =>
        [
            new(1, 1, EntryKind.ConfChange, Guid.Empty, ConfChangeCodec.Encode(new ConfChange(ConfChangeKind.AddVoter, "n1", ""))),
            new(1, 2, EntryKind.ConfChange, Guid.Empty, ConfChangeCodec.Encode(new ConfChange(ConfChangeKind.AddVoter, "n2", ""))),
            new(1, 3, EntryKind.ConfChange, Guid.Empty, ConfChangeCodec.Encode(new ConfChange(ConfChangeKind.AddVoter, "n3", ""))),
        ];
        var good = Bootstrap();
        for (long i = 4; i <= 10; i++)
        {
            good.Add(new Entry(3, i, EntryKind.Normal, Guid.Empty, B($"good{i}")));
        }

        var stale = Bootstrap();
        for (long i = 4; i <= 200; i++)
        {
            stale.Add(new Entry(2, i, EntryKind.Normal, Guid.Empty, B($"stale{i}")));
        }

        var c = new ManualCluster(3, initial: id => new RaftInitialState(
            new HardState(3, null, 3), null, id == "n3" ? stale : good));
        c.Elect("n1");
        c.Pump();
        int rejects = c.Delivered.Count(m => m.From == "n3" && m.Type == MessageType.AppendResponse && m.Reject);
        Assert.InRange(rejects, 1, 2);
        var n3 = c.Nodes["n3"];
        Assert.Equal(c.Nodes["n1"].LastIndex, n3.LastIndex);
        Assert.Equal(3, n3.TermAt(10));
        Assert.Equal(c.Nodes["n1"].CommitIndex, n3.CommitIndex);
    }

    [Fact]
    public void ReadIndexNeedsAHeartbeatQuorumAndFollowersForwardToTheLeader()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        c.Pump();
        Assert.True(leader.ReadIndex(B("r1")));
        c.Pump();
        var r = Assert.Single(c.Reads["n1"]);
        Assert.Equal(leader.CommitIndex, r.Index);
        Assert.Equal("r1", Encoding.UTF8.GetString(r.Context.Span));

        Assert.True(c.Nodes["n2"].ReadIndex(B("r2")));
        c.Pump();
        Assert.Equal("r2", Encoding.UTF8.GetString(Assert.Single(c.Reads["n2"]).Context.Span));

        // Cut off, the leader cannot confirm it still leads: the read is never served.
        c.Cut.Add("n1");
        Assert.True(leader.ReadIndex(B("r3")));
        c.Pump();
        Assert.Single(c.Reads["n1"]);
    }

    [Fact]
    public void LeadershipTransferMakesTheTargetLeaderInOneElection()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        long term = leader.Term;
        Assert.True(leader.TransferLeadership("n3"));
        c.Pump();
        Assert.Equal(RaftRole.Leader, c.Nodes["n3"].Role);
        Assert.Equal(term + 1, c.Nodes["n3"].Term);
        Assert.Equal(RaftRole.Follower, leader.Role);
    }

    [Fact]
    public void MembershipChangesAddALearnerPromoteItAndRemoveTheLeader()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        c.Pump();
        c.AddNode("n4", null, null, 99);
        Assert.True(leader.ProposeConfChange(new ConfChange(ConfChangeKind.AddLearner, "n4", "addr4")) > 0);
        Assert.Equal(-1, leader.ProposeConfChange(new ConfChange(ConfChangeKind.AddLearner, "n5", "addr5")));
        c.Tick(5);
        Assert.Contains("n4", leader.Learners);
        Assert.Contains("n4", c.Nodes["n4"].Learners);
        Assert.Equal(leader.LastIndex, c.Nodes["n4"].LastIndex);
        Assert.DoesNotContain("n4", leader.Voters);

        Assert.True(leader.ProposeConfChange(new ConfChange(ConfChangeKind.PromoteLearner, "n4", "addr4")) > 0);
        c.Tick(5);
        Assert.Contains("n4", leader.Voters);
        Assert.Equal(4, c.Nodes["n2"].Voters.Count);

        Assert.True(leader.ProposeConfChange(new ConfChange(ConfChangeKind.Remove, "n1", "")) > 0);
        c.Tick(5);
        Assert.NotEqual(RaftRole.Leader, leader.Role);
        Assert.DoesNotContain("n1", c.Nodes["n2"].Voters);
        c.Tick(80);
        var next = c.Leader;
        Assert.NotNull(next);
        Assert.NotEqual("n1", next!.Id);
        long index = next.Propose(B("after"), Guid.Empty);
        c.Tick(3); // a follower learns the commit with the next heartbeat at the latest
        Assert.Contains(c.Applied["n4"], e => e.Index == index);
    }

    [Fact]
    public void LaggingFollowerGetsTheSnapshotWhenEntriesWereCompacted()
    {
        var c = new ManualCluster(3);
        var leader = c.Elect("n1");
        c.Cut.Add("n3");
        for (int i = 0; i < 20; i++)
        {
            leader.Propose(B($"p{i}"), Guid.Empty);
            c.Pump();
        }

        var meta = leader.SnapshotMetadataAtApplied();
        leader.Compact(meta);
        c.Cut.Clear();
        c.Tick(5);
        var snap = c.Delivered.FirstOrDefault(m => m.Type == MessageType.Snapshot && m.To == "n3");
        Assert.NotNull(snap);
        Assert.Equal(meta.Index, snap!.Snapshot!.Index);

        // The follower's acknowledgement of the snapshot moves it straight back to pipelined replication.
        Assert.Equal(leader.LastIndex, c.Nodes["n3"].LastIndex);
        Assert.Equal(ProgressState.Replicate, leader.ProgressOf("n3")!.Value.State);
    }

    [Fact]
    public void ConfChangeEncodingMatchesIndependentlyComputedBytes()
    {
        // python3: struct + zlib.crc32 over [1, 3, u16 2, "n4", u16 14, "127.0.0.1:7001"]
        var bytes = ConfChangeCodec.Encode(new ConfChange(ConfChangeKind.AddVoter, "n4", "127.0.0.1:7001"));
        Assert.Equal("010302006e340e003132372e302e302e313a3730303152aadfa4", Convert.ToHexString(bytes).ToLowerInvariant());
        Assert.Equal(new ConfChange(ConfChangeKind.AddVoter, "n4", "127.0.0.1:7001"), ConfChangeCodec.TryDecode(bytes));
        bytes[5] ^= 1;
        Assert.Null(ConfChangeCodec.TryDecode(bytes));
    }
}
