using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Coordinator.Placement;

/// <summary>Where one write goes.</summary>
/// <param name="Targets">The volumes to stage the value on, best first (at most R).</param>
/// <param name="Home">The shard map's replica list for the key (the copies' home; repair and rebalance move copies there).</param>
public sealed record ReplicaPlan(IReadOnlyList<VolumeRecord> Targets, IReadOnlyList<string> Home);

/// <summary>
/// Chooses the volumes for a write (SPEC "Placement"): the key's shard's listed volumes that are healthy, then, for
/// each listed one that is down, the next healthy volume in the shard's HRW order over every registered volume.
/// The plan may hold fewer than R volumes; the write path needs at least W of them to succeed.
/// Thread-safety: stateless.
/// </summary>
public static class ReplicaPlanner
{
    public static ReplicaPlan Plan(RegistryView registry, int shard, int replicas, Func<VolumeRecord, bool> isHealthy)
    {
        var home = registry.ShardMap[shard] ?? (IReadOnlyList<string>)[];
        var targets = new List<VolumeRecord>(replicas);
        var taken = new HashSet<string>(StringComparer.Ordinal);
        foreach (var id in home)
        {
            taken.Add(id);
            if (targets.Count < replicas && registry.Volumes.TryGetValue(id, out var volume) && Usable(volume, isHealthy))
            {
                targets.Add(volume);
            }
        }
        if (targets.Count < replicas)
        {
            foreach (var id in Hrw.Order(shard, registry.Volumes.Keys))
            {
                if (targets.Count == replicas)
                {
                    break;
                }
                var volume = registry.Volumes[id];
                if (!taken.Contains(id) && Usable(volume, isHealthy))
                {
                    targets.Add(volume);
                }
            }
        }
        return new ReplicaPlan(targets, home);
    }

    private static bool Usable(VolumeRecord volume, Func<VolumeRecord, bool> isHealthy) => volume.State == VolumeState.Up && isHealthy(volume);
}
