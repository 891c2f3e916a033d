using System.Text;
using MiniKV.Consensus.Core;

namespace MiniKV.Consensus.Tests.Core;

/// <summary>
/// A ReadIndex round goes to just enough voters for a quorum (RaftNode.Read.cs, SendReadRound); a read whose round
/// is not echoed within a tick asks everyone.
/// </summary>
public sealed class ReadRoundTests
{
    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    /// <summary>Heartbeats only every 50 ticks, so within a test's few ticks every heartbeat is a read round's.</summary>
    private static ManualCluster QuietCluster(int voters) =>
        new(voters, options: (id, seed) => new RaftNodeOptions
        {
            Id = id,
            Random = new Random(seed),
            HeartbeatTicks = 50,
            ElectionTicksMin = 150,
            ElectionTicksMax = 300,
        });

    /// <summary>The followers a read on the leader asked (those not cut off), in id order, and whether the read was served.</summary>
    private static (string[] Asked, bool Served) Read(ManualCluster c, RaftNode leader, string key)
    {
        int delivered = c.Delivered.Count;
        int reads = c.Reads[leader.Id].Count;
        Assert.True(leader.ReadIndex(B(key)));
        c.Pump();
        var asked = c.Delivered.Skip(delivered).Where(m => m.Type == MessageType.Heartbeat).Select(m => m.To).Order(StringComparer.Ordinal).ToArray();
        return (asked, c.Reads[leader.Id].Count == reads + 1);
    }

    [Theory]
    [InlineData(3, 1)]
    [InlineData(5, 2)]
    public void A_read_round_asks_only_enough_followers_for_a_quorum(int voters, int asked)
    {
        var c = QuietCluster(voters);
        var leader = c.Elect("n1");
        c.Pump();
        for (int i = 0; i < 3; i++)
        {
            var read = Read(c, leader, $"r{i}");
            Assert.True(read.Served);
            Assert.Equal(asked, read.Asked.Length);
            Assert.Equal(leader.CommitIndex, c.Reads["n1"][^1].Index);
        }
    }

    [Fact]
    public void A_read_whose_follower_stopped_answering_asks_everyone_after_a_tick_and_then_skips_that_follower()
    {
        var c = QuietCluster(3);
        var leader = c.Elect("n1");
        c.Pump();
        var first = Read(c, leader, "first");
        Assert.True(first.Served);
        string gone = Assert.Single(first.Asked);
        string other = gone == "n2" ? "n3" : "n2";

        c.Cut.Add(gone);
        var stalled = Read(c, leader, "stalled");
        Assert.Empty(stalled.Asked); // it asked only the cut-off voter: nothing was delivered
        Assert.False(stalled.Served);

        // One tick may come right after the round was sent: not yet a stall.
        c.Tick(1);
        Assert.Single(c.Reads["n1"]);
        c.Tick(1);
        Assert.Equal(2, c.Reads["n1"].Count);
        Assert.Equal("stalled", Encoding.UTF8.GetString(c.Reads["n1"][^1].Context.Span));

        // The voter that answered the broadcast is asked from now on.
        var next = Read(c, leader, "next");
        Assert.True(next.Served);
        Assert.Equal([other], next.Asked);
    }

    [Fact]
    public void A_leader_that_lost_its_quorum_serves_no_read_even_after_asking_everyone()
    {
        var c = QuietCluster(3);
        var leader = c.Elect("n1");
        c.Pump();
        Assert.True(Read(c, leader, "first").Served);

        c.Cut.Add("n2");
        c.Cut.Add("n3");
        Assert.False(Read(c, leader, "cut off").Served);
        c.Tick(5);
        Assert.Single(c.Reads["n1"]);
    }
}
