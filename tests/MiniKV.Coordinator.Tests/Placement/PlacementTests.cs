using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Placement;
using MiniKV.Coordinator.Tests.Support;

namespace MiniKV.Coordinator.Tests.Placement;

public class PlacementTests
{
    private static MetadataStateMachine WithVolumes(TempDirectory dir, int count)
    {
        var sm = new MetadataStateMachine(dir.Path);
        var entries = new List<Entry>();
        for (var i = 1; i <= count; i++)
        {
            entries.Add(new Entry(1, i, EntryKind.Normal, Guid.Empty, CommandCodec.Encode(new RegisterVolumeCommand($"vol-{i}", $"http://h:{i}", $"h:{i}", 1000, 1))));
        }
        sm.Apply(entries);
        return sm;
    }

    [Fact]
    public void The_map_spreads_shards_evenly_and_adding_a_volume_moves_few_of_them()
    {
        using var dir = new TempDirectory();
        using var sm = WithVolumes(dir, 6);
        var map = Hrw.BuildMap(sm.Registry, 3);
        Assert.Equal(256, map.Shards.Count);
        var load = new Dictionary<string, int>();
        foreach (var a in map.Shards)
        {
            Assert.Equal(3, a.Volumes.Distinct().Count());
            foreach (var v in a.Volumes)
            {
                load[v] = load.GetValueOrDefault(v) + 1;
            }
        }
        Assert.Equal(6, load.Count);
        Assert.All(load.Values, n => Assert.InRange(n, 128 - 40, 128 + 40)); // 256 * 3 / 6 = 128 each on average

        sm.Apply([new Entry(1, 7, EntryKind.Normal, Guid.Empty, CommandCodec.Encode(new RegisterVolumeCommand("vol-7", "http://h:7", "h:7", 1000, 1)))]);
        var after = Hrw.BuildMap(sm.Registry, 3);
        var moved = 0;
        for (var s = 0; s < 256; s++)
        {
            moved += after.Shards[s].Volumes.Except(map.Shards[s].Volumes).Count();
        }
        // Only the copies the new volume takes move: about 3/7 of 256.
        Assert.InRange(moved, 60, 160);
        Assert.Equal(moved, after.Shards.Sum(a => a.Volumes.Count(v => v == "vol-7")));
    }

    [Fact]
    public void A_down_volume_is_replaced_by_the_next_healthy_one_in_hrw_order()
    {
        using var dir = new TempDirectory();
        using var sm = WithVolumes(dir, 5);
        sm.Apply([new Entry(1, 6, EntryKind.Normal, Guid.Empty, CommandCodec.Encode(Hrw.BuildMap(sm.Registry, 3)))]);
        var shard = 42;
        var home = sm.Registry.ShardMap[shard]!;
        var all = Hrw.Order(shard, sm.Registry.Volumes.Keys);
        Assert.Equal(all.Take(3), home);

        var healthy = ReplicaPlanner.Plan(sm.Registry, shard, 3, _ => true);
        Assert.Equal(home, healthy.Targets.Select(v => v.Id));

        var down = home[1];
        var plan = ReplicaPlanner.Plan(sm.Registry, shard, 3, v => v.Id != down);
        Assert.Equal([home[0], home[2], all[3]], plan.Targets.Select(v => v.Id));
        Assert.Equal(home, plan.Home);

        var twoLeft = ReplicaPlanner.Plan(sm.Registry, shard, 3, v => v.Id == all[0] || v.Id == all[4]);
        Assert.Equal([all[0], all[4]], twoLeft.Targets.Select(v => v.Id));
    }

    [Fact]
    public void A_volume_registered_after_the_map_was_built_holds_nothing_until_rebalance()
    {
        using var dir = new TempDirectory();
        using var sm = WithVolumes(dir, 3);
        sm.Apply([new Entry(1, 4, EntryKind.Normal, Guid.Empty, CommandCodec.Encode(Hrw.BuildMap(sm.Registry, 3)))]);
        sm.Apply([new Entry(1, 5, EntryKind.Normal, Guid.Empty, CommandCodec.Encode(new RegisterVolumeCommand("vol-new", "http://h:9", "h:9", 1000, 1)))]);
        for (var shard = 0; shard < 256; shard++)
        {
            Assert.DoesNotContain("vol-new", ReplicaPlanner.Plan(sm.Registry, shard, 3, _ => true).Targets.Select(v => v.Id));
        }
    }
}
