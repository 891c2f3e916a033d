using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Placement;

namespace MiniKV.Coordinator.Operations.Rebalance;

/// <summary>One shard whose replica list changes.</summary>
/// <param name="Shard">The shard, 0..255.</param>
/// <param name="From">Its list now (empty when the map was never built).</param>
/// <param name="To">Its list after the rebalance.</param>
public sealed record ShardMove(int Shard, IReadOnlyList<string> From, IReadOnlyList<string> To)
{
    /// <summary>Replica slots that get a new volume (volumes in <see cref="To"/> that are not in <see cref="From"/>).</summary>
    public int NewSlots => To.Count(v => !From.Contains(v, StringComparer.Ordinal));
}

/// <summary>What a rebalance would change.</summary>
/// <param name="Moves">The shards whose lists change, in shard order.</param>
/// <param name="Eligible">The volumes placement may use (state up), in id order.</param>
/// <param name="SlotsMoved">Replica slots that get a new volume, over all moves.</param>
/// <param name="SlotsTotal">Replica slots in the whole target map (256 × the list length).</param>
public sealed record RebalancePlan(IReadOnlyList<ShardMove> Moves, IReadOnlyList<string> Eligible, int SlotsMoved, int SlotsTotal)
{
    public IReadOnlyList<ShardAssignment> Targets => [.. Moves.Select(m => new ShardAssignment(m.Shard, m.To))];
}

/// <summary>
/// Recomputes the shard map by HRW over the volumes that are up (draining and down volumes get nothing) and keeps
/// only the shards whose lists changed: with HRW, adding a fourth volume to three at R = 3 changes the lists of
/// the shards where it ranks in the top three, which moves about a quarter of the replica slots.
/// Thread-safety: stateless.
/// </summary>
public static class RebalancePlanner
{
    public static RebalancePlan Plan(RegistryView registry, int replicas)
    {
        var eligible = new List<string>();
        foreach (var v in registry.Volumes.Values)
        {
            if (v.State == VolumeState.Up)
            {
                eligible.Add(v.Id);
            }
        }
        eligible.Sort(StringComparer.Ordinal);
        var moves = new List<ShardMove>();
        var slotsMoved = 0;
        var slotsTotal = 0;
        for (var shard = 0; shard < Common.Shards.Count; shard++)
        {
            var order = Hrw.Order(shard, eligible);
            var target = order.GetRange(0, Math.Min(replicas, order.Count));
            slotsTotal += target.Count;
            var current = registry.ShardMap[shard] ?? [];
            if (!current.SequenceEqual(target, StringComparer.Ordinal))
            {
                var move = new ShardMove(shard, current, target);
                moves.Add(move);
                slotsMoved += move.NewSlots;
            }
        }
        return new RebalancePlan(moves, eligible, slotsMoved, slotsTotal);
    }

    /// <summary>True when the key's copies are exactly on its shard's list (order aside): nothing to move.</summary>
    public static bool IsHome(KeyRecord record, IReadOnlyList<string> target)
    {
        if (record.Volumes.Count != target.Count)
        {
            return false;
        }
        foreach (var id in target)
        {
            if (!record.Volumes.Contains(id, StringComparer.Ordinal))
            {
                return false;
            }
        }
        return true;
    }
}
