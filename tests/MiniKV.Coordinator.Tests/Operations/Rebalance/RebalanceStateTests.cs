using System.Text;
using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Tests.Support;

namespace MiniKV.Coordinator.Tests.Operations.Rebalance;

/// <summary>How the state machine applies the rebalance commands.</summary>
public class RebalanceStateTests
{
    private const long Term = 2;
    private long _index;

    private static byte[] K(string key) => Encoding.UTF8.GetBytes(key);

    private object? Apply(MetadataStateMachine sm, MetadataCommand command) =>
        sm.Apply([new Entry(Term, ++_index, EntryKind.Normal, Guid.Empty, CommandCodec.Encode(command))])[0];

    private void Put(MetadataStateMachine sm, string key, ulong version, params string[] volumes) =>
        Apply(sm, new WriteBatchCommand(Term, 1, [new KeyWrite(WriteKind.Put, Guid.NewGuid(), K(key), version, 10, 1, "", volumes, false, WriteCondition.None, "")]));

    [Fact]
    public void A_relocation_applies_only_while_the_key_is_at_the_copied_version()
    {
        using var dir = new TempDirectory();
        using var sm = new MetadataStateMachine(dir.Path);
        Put(sm, "a", 5, "v1", "v2");
        Put(sm, "b", 6, "v1", "v2");
        var result = Assert.IsType<RelocateResult>(Apply(sm, new RelocateKeysCommand(
        [
            new KeyRelocation(K("a"), 5, ["v3", "v2", "v4"], false),
            new KeyRelocation(K("b"), 4, ["v3"], false), // b moved on to version 6 meanwhile
            new KeyRelocation(K("gone"), 1, ["v3"], false),
        ])));
        Assert.Equal([true, false, false], result.Applied);
        var a = sm.GetKey(K("a"))!;
        Assert.Equal(["v3", "v2", "v4"], a.Volumes);
        Assert.Equal(5ul, a.Version);
        Assert.Equal(["v1", "v2"], sm.GetKey(K("b"))!.Volumes);
        Assert.Null(sm.GetKey(K("gone")));
    }

    [Fact]
    public void Begin_switches_the_shard_lists_and_marks_the_run_until_its_own_end_survives_a_restart()
    {
        using var dir = new TempDirectory();
        using (var sm = new MetadataStateMachine(dir.Path))
        {
            Apply(sm, new SetShardsCommand([new ShardAssignment(3, ["v1", "v2"]), new ShardAssignment(4, ["v1", "v2"])]));
            Apply(sm, new BeginRebalanceCommand("run-1", 77, [new ShardAssignment(3, ["v1", "v3"])]));
            Assert.Equal(["v1", "v3"], sm.Registry.ShardMap[3]);
            Assert.Equal(["v1", "v2"], sm.Registry.ShardMap[4]);
            Assert.Equal(new RebalanceInProgress("run-1", 77, 1), sm.PendingRebalance);
            Apply(sm, new EndRebalanceCommand("run-0", 78)); // an older run's end does not end this one
            Assert.NotNull(sm.PendingRebalance);
        }
        using (var sm = new MetadataStateMachine(dir.Path))
        {
            _index = sm.AppliedIndex;
            Assert.Equal(new RebalanceInProgress("run-1", 77, 1), sm.PendingRebalance);
            Assert.Equal(["v1", "v3"], sm.Registry.ShardMap[3]);
            Apply(sm, new EndRebalanceCommand("run-1", 79));
            Assert.Null(sm.PendingRebalance);
        }
        using (var sm = new MetadataStateMachine(dir.Path))
        {
            Assert.Null(sm.PendingRebalance);
        }
    }

    [Fact]
    public void Removing_a_volume_drops_it_from_the_registry_and_every_shard_list()
    {
        using var dir = new TempDirectory();
        using (var sm = new MetadataStateMachine(dir.Path))
        {
            Apply(sm, new RegisterVolumeCommand("v1", "http://h:1", "h:1", 1, 1));
            Apply(sm, new RegisterVolumeCommand("v2", "http://h:2", "h:2", 1, 1));
            Apply(sm, new SetShardsCommand([new ShardAssignment(0, ["v1", "v2"]), new ShardAssignment(1, ["v1"])]));
            Apply(sm, new RemoveVolumeCommand("v2", 5));
            Apply(sm, new RemoveVolumeCommand("v2", 6)); // twice: the second is a no-op
            Assert.Equal(["v1"], sm.Registry.Volumes.Keys);
            Assert.Equal(["v1"], sm.Registry.ShardMap[0]);
        }
        using (var sm = new MetadataStateMachine(dir.Path))
        {
            Assert.Equal(["v1"], sm.Registry.Volumes.Keys);
            Assert.Equal(["v1"], sm.Registry.ShardMap[0]);
            Assert.Equal(["v1"], sm.Registry.ShardMap[1]);
        }
    }
}
