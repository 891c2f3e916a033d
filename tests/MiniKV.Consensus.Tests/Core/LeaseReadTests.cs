using System.Text;
using MiniKV.Consensus.Core;

namespace MiniKV.Consensus.Tests.Core;

/// <summary>Leader lease reads (RaftNode.Lease.cs): when they are served, and every rule that keeps them safe.</summary>
public sealed class LeaseReadTests
{
    private const int ElectionTicksMin = 15;

    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    /// <summary>Every node with lease reads; the election timeout is exactly the minimum, so a cut-off leader's
    /// followers elect another at the earliest tick the rules allow.</summary>
    private static ManualCluster LeaseCluster(int voters = 3) =>
        new(voters, options: (id, seed) => new RaftNodeOptions
        {
            Id = id,
            Random = new Random(seed),
            ElectionTicksMin = ElectionTicksMin,
            ElectionTicksMax = ElectionTicksMin + 1,
            LeaseReads = true,
        });

    /// <summary>
    /// Ticks a new cluster until it has a leader, which must be n1. A test cannot make a node campaign at once here:
    /// with lease reads a voter grants no vote in its first <see cref="ElectionTicksMin"/> ticks. All fire at that
    /// tick, and the rule between rival pre-candidates grants the lowest id.
    /// </summary>
    private static RaftNode ElectN1(ManualCluster c)
    {
        c.Pump();
        c.Tick(ElectionTicksMin + 2);
        Assert.Equal("n1", c.Leader?.Id);
        c.Pump();
        return c.Leader!;
    }

    /// <summary>Elects n1 and lets one heartbeat round be echoed, so n1 holds a lease.</summary>
    private static (ManualCluster C, RaftNode Leader) ClusterWithLease()
    {
        var c = LeaseCluster();
        var leader = ElectN1(c);
        Assert.True(leader.ReadIndex(B("first")));
        c.Pump();
        Assert.Single(c.Reads["n1"]);
        return (c, leader);
    }

    /// <summary>Whether a read on <paramref name="n"/> is answered without any message.</summary>
    private static bool ServedFromLease(ManualCluster c, RaftNode n, string key)
    {
        long before = n.LeaseReadsServed;
        int delivered = c.Delivered.Count;
        Assert.True(n.ReadIndex(B(key)));
        c.Pump();
        bool served = n.LeaseReadsServed == before + 1;
        if (served)
        {
            Assert.Equal(delivered, c.Delivered.Count);
            Assert.Equal(key, Encoding.UTF8.GetString(c.Reads[n.Id][^1].Context.Span));
            Assert.Equal(n.CommitIndex, c.Reads[n.Id][^1].Index);
        }

        return served;
    }

    [Fact]
    public void AFreshQuorumEchoLetsTheLeaderAnswerReadsWithoutAHeartbeatRound()
    {
        var c = LeaseCluster();
        var leader = ElectN1(c);

        // No round echoed yet in this term: the first read costs one, which also starts the lease.
        Assert.False(ServedFromLease(c, leader, "r1"));
        Assert.Contains(c.Delivered, m => m.Type == MessageType.Heartbeat);
        Assert.True(ServedFromLease(c, leader, "r2"));

        // A follower's forwarded read is answered from the lease too.
        Assert.True(c.Nodes["n2"].ReadIndex(B("r3")));
        c.Pump();
        Assert.Equal("r3", Encoding.UTF8.GetString(Assert.Single(c.Reads["n2"]).Context.Span));
        Assert.Equal(2, leader.LeaseReadsServed);

        // Periodic heartbeats keep renewing it.
        c.Tick(ElectionTicksMin * 3);
        Assert.True(ServedFromLease(c, leader, "r4"));
    }

    [Fact]
    public void ACutOffLeadersLeaseEndsBeforeTheOthersCanElectAnother()
    {
        var (c, old) = ClusterWithLease();
        c.Cut.Add("n1");
        Assert.True(ServedFromLease(c, old, "just-cut"));

        // Tick by tick: from the tick a new leader exists, the old one must never answer from its lease.
        bool sawNewLeader = false;
        for (int t = 0; t < ElectionTicksMin * 3 && !sawNewLeader; t++)
        {
            c.Tick(1);
            sawNewLeader = c.Leader is { } l && l.Id != "n1";
            if (sawNewLeader)
            {
                Assert.False(ServedFromLease(c, old, $"after-election-{t}"));
            }
        }

        Assert.True(sawNewLeader);
    }

    [Fact]
    public void AVoterGrantsNoVoteWithinAnElectionTimeoutOfItsStart()
    {
        var c = LeaseCluster();
        ElectN1(c);

        // n3 restarts on its data; it may have echoed a round of n1's just before it crashed.
        var restarted = c.AddNode("n3", c.Storage["n3"].Load(), null, 7);
        var vote = new Message { Type = MessageType.Vote, From = "n2", To = "n3", Term = restarted.Term + 1, Index = restarted.LastIndex, LogTerm = restarted.LastTerm };
        restarted.Step(vote);
        Assert.DoesNotContain(Sent(restarted), m => m.Type == MessageType.VoteResponse);

        for (int i = 0; i < ElectionTicksMin - 1; i++)
        {
            restarted.Tick();
        }

        restarted.Step(vote);
        Assert.DoesNotContain(Sent(restarted), m => m.Type == MessageType.VoteResponse);

        // Once its startup lease has run out (the same tick its own election timer fires), a candidate with an
        // up-to-date log gets the vote.
        restarted.Tick();
        restarted.Step(vote);
        Assert.Contains(Sent(restarted), m => m.Type == MessageType.VoteResponse && !m.Reject);
    }

    /// <summary>The messages of <paramref name="n"/>'s next Ready (none if it has none), which it then advances past.</summary>
    private static IReadOnlyList<Message> Sent(RaftNode n)
    {
        if (!n.HasReady)
        {
            return [];
        }

        var rd = n.GetReady();
        n.Advance(rd);
        return rd.Messages;
    }

    [Fact]
    public void ALeaderThatSentTimeoutNowServesNoLeaseReadForTheRestOfItsTerm()
    {
        var (c, leader) = ClusterWithLease();
        c.Cut.Add("n3"); // the target never hears TimeoutNow, so the transfer is abandoned later
        Assert.True(leader.TransferLeadership("n3"));
        c.Pump();
        Assert.False(ServedFromLease(c, leader, "during-transfer"));

        c.Tick(ElectionTicksMin + 1);
        Assert.Null(leader.LeadTransferee);
        Assert.Equal(RaftRole.Leader, leader.Role);
        Assert.False(ServedFromLease(c, leader, "after-abandoned-transfer"));
        Assert.Equal(0, leader.LeaseReadsServed);
    }

    [Fact]
    public void AnUnreachableReportDoesNotCutAFollowersLeaseShort()
    {
        var (c, _) = ClusterWithLease();
        c.Cut.Add("n1");
        c.Nodes["n2"].ReportLeaderUnreachable("n1");
        c.Nodes["n3"].ReportLeaderUnreachable("n1");

        // Without lease reads both would campaign within a few ticks (RaftNodeTests: within a heartbeat interval).
        c.Tick(ElectionTicksMin - 2);
        Assert.Null(c.Leader is { Id: not "n1" } l ? l : null);
    }

    [Fact]
    public void AnExpiredLeaseSendsReadsBackToHeartbeatRounds()
    {
        var (c, leader) = ClusterWithLease();
        Assert.True(ServedFromLease(c, leader, "held"));
        leader.ExpireLease();
        Assert.False(ServedFromLease(c, leader, "expired"));
        Assert.Equal("expired", Encoding.UTF8.GetString(c.Reads["n1"][^1].Context.Span));
        Assert.True(ServedFromLease(c, leader, "renewed"));
    }

    [Fact]
    public void LeaseReadsNeedCheckQuorum()
    {
        var options = new RaftNodeOptions { Id = "n1", LeaseReads = true, CheckQuorum = false };
        Assert.Throws<ArgumentException>(() => new RaftNode(options, new FakeRaftStorage().Load()));
    }

    [Fact]
    public void AFollowerReadAnsweredFromTheLeaseBringsTheCommitIndexWithIt()
    {
        var (c, leader) = ClusterWithLease();
        long index = leader.Propose(B("x"), Guid.Empty);
        c.Pump();
        Assert.Equal(index, leader.CommitIndex);
        Assert.DoesNotContain(c.Applied["n2"], e => e.Index == index); // not sent on its own

        long served = leader.LeaseReadsServed;
        Assert.True(c.Nodes["n2"].ReadIndex(B("r")));
        c.Pump();
        Assert.Equal(served + 1, leader.LeaseReadsServed);
        Assert.Equal(index, Assert.Single(c.Reads["n2"]).Index);
        Assert.Contains(c.Applied["n2"], e => e.Index == index);
        Assert.DoesNotContain(c.Applied["n3"], e => e.Index == index);
    }
}
