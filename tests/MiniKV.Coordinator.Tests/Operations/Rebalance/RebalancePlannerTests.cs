using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Operations.Rebalance;
using MiniKV.Coordinator.Placement;
using MiniKV.Coordinator.Tests.Support;

namespace MiniKV.Coordinator.Tests.Operations.Rebalance;

public class RebalancePlannerTests
{
    private long _index;

    private void Apply(MetadataStateMachine sm, MetadataCommand command) =>
        sm.Apply([new Entry(1, ++_index, EntryKind.Normal, Guid.Empty, CommandCodec.Encode(command))]);

    private MetadataStateMachine WithVolumes(TempDirectory dir, int count)
    {
        var sm = new MetadataStateMachine(dir.Path);
        for (var i = 1; i <= count; i++)
        {
            Apply(sm, new RegisterVolumeCommand($"vol-{i}", $"http://h:{i}", $"h:{i}", 1000, 1));
        }
        return sm;
    }

    [Fact]
    public void A_fourth_volume_takes_about_a_quarter_of_the_replica_slots_and_only_changed_shards_move()
    {
        using var dir = new TempDirectory();
        using var sm = WithVolumes(dir, 3);
        Apply(sm, Hrw.BuildMap(sm.Registry, 3));
        Assert.Empty(RebalancePlanner.Plan(sm.Registry, 3).Moves);

        Apply(sm, new RegisterVolumeCommand("vol-4", "http://h:4", "h:4", 1000, 1));
        var plan = RebalancePlanner.Plan(sm.Registry, 3);
        Assert.Equal(768, plan.SlotsTotal);
        // Each moving shard trades exactly one old volume for vol-4; about 3/4 of the shards rank vol-4 in their top 3.
        Assert.All(plan.Moves, m =>
        {
            Assert.Equal(1, m.NewSlots);
            Assert.Contains("vol-4", m.To);
            Assert.Equal(3, m.To.Count);
        });
        Assert.Equal(plan.Moves.Count, plan.SlotsMoved);
        Assert.InRange(plan.SlotsMoved, 768 / 4 - 30, 768 / 4 + 30);

        Apply(sm, new SetShardsCommand(plan.Targets));
        Assert.Empty(RebalancePlanner.Plan(sm.Registry, 3).Moves);
    }

    [Fact]
    public void Draining_and_down_volumes_get_no_shards()
    {
        using var dir = new TempDirectory();
        using var sm = WithVolumes(dir, 5);
        Apply(sm, Hrw.BuildMap(sm.Registry, 3));
        Apply(sm, new SetVolumeStateCommand("vol-2", VolumeState.Draining, 2));
        Apply(sm, new SetVolumeStateCommand("vol-5", VolumeState.Down, 2));
        var plan = RebalancePlanner.Plan(sm.Registry, 3);
        Assert.Equal(["vol-1", "vol-3", "vol-4"], plan.Eligible);
        Assert.All(plan.Moves, m => Assert.DoesNotContain("vol-2", m.To));
        Apply(sm, new SetShardsCommand(plan.Targets));
        Assert.All(sm.Registry.ShardMap, list => Assert.Equal(["vol-1", "vol-3", "vol-4"], list!.Order(StringComparer.Ordinal)));
    }

    [Fact]
    public void A_key_is_home_when_its_copies_are_exactly_its_shards_list_in_any_order()
    {
        static KeyRecord On(params string[] volumes) => new([1], 1, 1, 1, "", 1, volumes, false, Guid.Empty);
        Assert.True(RebalancePlanner.IsHome(On("b", "a", "c"), ["a", "b", "c"]));
        Assert.False(RebalancePlanner.IsHome(On("a", "b"), ["a", "b", "c"]));
        Assert.False(RebalancePlanner.IsHome(On("a", "b", "c", "d"), ["a", "b", "c"]));
        Assert.False(RebalancePlanner.IsHome(On("a", "b", "d"), ["a", "b", "c"]));
    }

    [Fact]
    public async Task The_rate_limiter_spaces_copies_to_the_rate()
    {
        var limiter = new ByteRateLimiter(10_000_000);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 5; i++)
        {
            await limiter.WaitAsync(1_000_000, CancellationToken.None);
        }
        // 5 MB at 10 MB/s: the fifth copy starts 0.4 s after the first.
        Assert.InRange(watch.Elapsed.TotalSeconds, 0.35, 5);
        Assert.True(new ByteRateLimiter(0).WaitAsync(long.MaxValue, CancellationToken.None).IsCompleted);
    }
}
