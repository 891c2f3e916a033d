using MiniKV.Consensus.Core;

namespace MiniKV.Consensus.Tests.Core;

public sealed class ReadyTests
{
    private static List<Entry> Range(long first, long last, long term = 1) =>
        [.. Enumerable.Range((int)first, (int)(last - first + 1)).Select(i => new Entry(term, i, EntryKind.Normal, Guid.Empty, ReadOnlyMemory<byte>.Empty))];

    [Fact]
    public void Committed_entries_up_to_the_durable_index_may_be_applied_before_the_sync()
    {
        var rd = new Ready { CommittedEntries = Range(5, 10), Entries = Range(11, 12) };
        Assert.Equal(4, rd.DurableCommittedCount(durableIndex: 8)); // 5..8
        Assert.Equal(6, rd.DurableCommittedCount(durableIndex: 10));
        Assert.Equal(0, rd.DurableCommittedCount(durableIndex: 4));
    }

    [Fact]
    public void Entries_this_ready_replaces_are_not_durable_whatever_the_durable_index_says()
    {
        // A follower replaces its uncommitted suffix 8.. with the leader's entries and learns a commit of 9.
        var rd = new Ready { CommittedEntries = Range(5, 9, term: 2), Entries = Range(8, 12, term: 2) };
        Assert.Equal(3, rd.DurableCommittedCount(durableIndex: 12)); // 5..7 only
    }

    [Fact]
    public void Nothing_is_applied_early_with_a_snapshot_or_without_committed_entries()
    {
        Assert.Equal(0, new Ready { Entries = Range(1, 3) }.DurableCommittedCount(100));
        var snapshot = new Ready
        {
            Snapshot = new SnapshotMetadata(20, 1, new ConfState(["a"], [])),
            CommittedEntries = Range(21, 22),
        };
        Assert.Equal(0, snapshot.DurableCommittedCount(100));
    }
}
